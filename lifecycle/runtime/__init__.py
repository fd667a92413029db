"""Node-side training runtime: distributed init, atomic checkpoints, stop on signal, metrics.

Everything here imports torch and runs inside torchrun's workers; the automation layer never imports it.
"""

"""Slurm on the fleet: slurm.conf rendering and the node-side hooks Slurm calls."""

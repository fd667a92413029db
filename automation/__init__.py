"""The `gpufleet` automation layer: a core that never imports typer or rich, and a thin CLI."""

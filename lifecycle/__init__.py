"""What runs on the nodes: bootstrap, Slurm config, health checks, the training runtime and jobs."""

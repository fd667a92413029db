"""Workload managers the rebalancer drains and joins nodes through (Slurm, Kubernetes, none)."""

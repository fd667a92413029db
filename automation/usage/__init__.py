"""Where the GPU-hours went: usage and cost by account, pool, workload class and move."""

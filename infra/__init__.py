"""Pulumi components for GPU fleets and the pure planners beside them."""

"""Node health checks in tiers by cost (quick, performance, deep), with typed results.

Entry point: ``python -m gpufleet.lifecycle.health [--tiers quick,performance,deep] [--json] [--textfile PATH]``.
Every external command goes through ``runner.CommandRunner``; expectations come from the bundle's
instance catalog (``gpufleet.lifecycle.instance_types``) and, for performance, from ``expected.py``.
"""

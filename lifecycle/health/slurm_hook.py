"""Slurm HealthCheckProgram / prolog body: quick tier on this node, drain it on FAIL.

Started by ``slurm_healthcheck.sh`` (which sets PATH: Slurm gives hooks none). The node is
``$SLURMD_NODENAME`` (slurmd sets it for the health check), else ``$GPUFLEET_NODE_NAME``, else the
host name. Writes the Prometheus textfile when ``$GPUFLEET_HEALTH_TEXTFILE`` is set. Exit status:
0 unless the node FAILed (a prolog that exits non-zero also drains the node and requeues the job).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpufleet.lifecycle.health.actions import SlurmActions
from gpufleet.lifecycle.health.metrics import write_textfile
from gpufleet.lifecycle.health.node_check import check_node
from gpufleet.lifecycle.health.results import Tier
from gpufleet.lifecycle.health.runner import SubprocessRunner
from gpufleet.lifecycle.health.settings import HealthSettings


def main() -> int:
    node = os.environ.get("SLURMD_NODENAME") or os.environ.get("GPUFLEET_NODE_NAME")
    settings = HealthSettings.from_environment(**({"node": node} if node else {}))
    runner = SubprocessRunner()
    report = check_node(settings, (Tier.QUICK,), runner)
    if os.environ.get("GPUFLEET_HEALTH_TEXTFILE"):
        write_textfile(Path(os.environ["GPUFLEET_HEALTH_TEXTFILE"]), report)
    print(SlurmActions(runner).apply(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m gpufleet.automation.heal``: the healer as a service runs it (the Slurm head's
``gpufleet-healer.service``), from the healer archive, without typer or rich.

The same pass as `gpufleet heal` (heal/run.py), the same options. Each pass's report is one JSON
line on stdout (the service's journal); progress goes to stderr. Exit status: 0, 1 when the last
pass had a failed operation, else the error's code (2 bad input, 3 AWS, 4 conflict, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gpufleet.automation.aws import IDENTITIES
from gpufleet.automation.heal import service as core
from gpufleet.automation.heal.run import ORCHESTRATORS, PassOptions, configured_pass
from gpufleet.automation.inventory import DEFAULT_PATH
from gpufleet.infra.errors import GpufleetError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpufleet.automation.heal",
                                description="One heal pass (or --loop) over the Slurm- or EKS-run node groups.")
    d = PassOptions()
    p.add_argument("--inventory", type=Path, default=DEFAULT_PATH, help="fleet inventory (stack outputs)")
    p.add_argument("--dry-run", action="store_true", help="decide and report; change nothing")
    p.add_argument("--probe", default=d.probe, help="ssm, orchestrator or local (default: ssm on Slurm)")
    p.add_argument("--tiers", default=d.tiers, help="health tiers a newcomer must pass (comma-separated)")
    p.add_argument("--per-group", type=int, default=d.per_group, help="replacements per group per hour")
    p.add_argument("--per-pool", type=int, default=d.per_pool, help="replacements per pool per hour")
    p.add_argument("--orchestrator", choices=ORCHESTRATORS, default=d.orchestrator)
    p.add_argument("--sources", default=d.sources, help="ec2, prometheus (comma-separated); '' for none")
    p.add_argument("--prometheus", default=d.prometheus, help="Prometheus query base for the alerts")
    p.add_argument("--identity", choices=IDENTITIES, default=d.identity,
                   help="caller (through the automation role) or instance (the Slurm head's role: its own stack)")
    p.add_argument("--join-timeout", type=float, default=d.join_timeout_s,
                   help="seconds a newcomer's node has to join before the gate (0: gate at once)")
    p.add_argument("--checkpoint-grace", type=float, default=d.checkpoint_grace_s,
                   help="seconds a drained node's jobs get after the checkpoint signal to save and requeue "
                        "themselves (default: from their published checkpoint time, 30 s where none)")
    p.add_argument("--heartbeat", type=Path, default=None,
                   help="file touched at each step and pass (a liveness probe reads its age)")
    p.add_argument("--loop", action="store_true", help="pass after pass, --interval apart")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between passes (1 to 3600)")
    p.add_argument("--passes", type=int, default=1_000_000, help="with --loop: stop after this many passes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    options = PassOptions(inventory=ns.inventory, dry_run=ns.dry_run, probe=ns.probe, tiers=ns.tiers,
                          per_group=ns.per_group, per_pool=ns.per_pool, orchestrator=ns.orchestrator,
                          sources=ns.sources, prometheus=ns.prometheus, identity=ns.identity,
                          join_timeout_s=ns.join_timeout, checkpoint_grace_s=ns.checkpoint_grace)

    def beat() -> None:
        if ns.heartbeat is not None:
            ns.heartbeat.touch()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        beat()

    def one() -> core.HealReport:
        beat()
        report = configured_pass(options, progress=progress)
        print(json.dumps(report.to_dict(), default=str), flush=True)
        beat()
        return report

    try:
        reports = core.heal_loop(ns.interval if ns.loop else core.MIN_INTERVAL_S, ns.passes if ns.loop else 1, one)
    except GpufleetError as error:
        print(f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return error.code
    return 0 if reports[-1].ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Local Slurm figures: bring-up time and the timeline of a node crash until the job runs again.

Run: .venv/bin/python bench/slurm_local.py [--trials N] [--slurmd-timeout S]
Needs root and Debian's slurm packages; starts and stops its own daemons (tests/slurm_harness.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the repo first: tests/infra must not shadow infra
from slurm_harness import start_local_slurm  # noqa: E402


def one_trial(slurmd_timeout_s: int, message_timeout_s: int, cred_expire_s: int) -> dict[str, float]:
    with start_local_slurm(slurmd_timeout_s=slurmd_timeout_s, message_timeout_s=message_timeout_s,
                           cred_expire_s=cred_expire_s) as slurm:
        figures = {"bringup_s": slurm.bringup_s}
        t = time.monotonic()
        slurm.register_dynamic_node("dyn1")
        figures["dynamic_register_s"] = time.monotonic() - t
        job = slurm.sbatch("#!/bin/bash\nsleep 300\n", "-N", "1", "-o", "/dev/null")
        first = slurm.wait_until(lambda: (j := slurm.job(job)).state == "RUNNING" and j, 30, "running")
        crash = time.monotonic()
        slurm.crash_node(first.nodes)
        slurm.wait_until(lambda: slurm.node(first.nodes).base_state == "DOWN", 120, "down", interval=0.05)
        figures["crash_to_down_s"] = time.monotonic() - crash
        slurm.wait_until(lambda: (j := slurm.job(job)).state == "RUNNING" and j.restarts >= 1, 120, "rerun",
                         interval=0.05)
        figures["crash_to_running_again_s"] = time.monotonic() - crash
        slurm.run("scancel", str(job))
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--slurmd-timeout", type=int, default=3)
    parser.add_argument("--message-timeout", type=int, default=2)
    parser.add_argument("--cred-expire", type=int, default=5)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the baseline trial (SlurmdTimeout=5 s, MessageTimeout=10 s)")
    args = parser.parse_args()
    rows = [one_trial(args.slurmd_timeout, args.message_timeout, args.cred_expire) for _ in range(args.trials)]
    # Baseline in the same run: Slurm's default MessageTimeout (10 s) with SlurmdTimeout=5 s.
    baseline = one_trial(5, 10, args.cred_expire) if args.baseline else None
    print(f"local Slurm, 3 static nodes, SlurmdTimeout={args.slurmd_timeout}s MessageTimeout={args.message_timeout}s\n"
          f"cred_expire={args.cred_expire}s, {args.trials} trials (median, min-max)")
    for key in rows[0]:
        values = [r[key] for r in rows]
        line = f"  {key:24s} {statistics.median(values):6.2f}  {f'({min(values):.2f}-{max(values):.2f})':<13}"
        if baseline is not None:
            line += f"  baseline {baseline[key]:6.2f}  ratio {statistics.median(values) / baseline[key]:.2f}"
        print(line)


if __name__ == "__main__":
    main()

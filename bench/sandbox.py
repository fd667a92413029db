"""Sandbox figures: `gpufleet sandbox up` through the CLI and in process (render, server start and
apply), a fresh fleet for a test (snapshot restore, and a full re-apply for comparison), and
`gpufleet status` (in process).

    .venv/bin/python bench/sandbox.py [--repeat 5] [--cli-repeat 3]

Status is compared with the cheapest call it makes (one DescribeAutoScalingGroups in a consumer
account through the same AwsAccess), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.sandbox import control
from gpufleet.automation.status import fleet_status

REPO = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cli_up(work: Path) -> float:
    """Wall seconds of `gpufleet sandbox up` in a fresh directory (then `down`, not timed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    gpufleet = [sys.executable, "-m", "gpufleet.automation", "sandbox"]
    t0 = time.perf_counter()
    subprocess.run([*gpufleet, "up", "--json"], cwd=work, env=env, check=True, capture_output=True, timeout=300)
    seconds = time.perf_counter() - t0
    subprocess.run([*gpufleet, "down"], cwd=work, env=env, check=True, capture_output=True, timeout=60)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli-repeat", type=int, default=3)
    args = parser.parse_args()
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(REPO / "stacks", work / "stacks", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        cli = [cli_up(work) for _ in range(args.cli_repeat)]

        specs = control.load_fleet(REPO / "stacks")
        render = timed(lambda: control.render(specs), args.repeat)
        state = work / ".gpufleet-bench"
        t0 = time.perf_counter()
        info = control.up(REPO / "stacks", state)
        total = time.perf_counter() - t0
        try:
            os.environ.update(info.env)
            client = control.SandboxClient(info.endpoint)
            rendered = control.render(specs)
            restore = timed(client.restore, args.repeat)

            def reapply() -> None:
                client.reset(state=True)
                control.apply(info.endpoint, rendered, Path(info.inventory))

            fresh = timed(reapply, args.repeat)
            inv = load_inventory(Path(info.inventory))
            access = AwsAccess(inv, operation="bench")
            asg = access.client("training", "autoscaling")
            fleet_status(inv, access)  # warm the clients
            client.reset()
            status = timed(lambda: fleet_status(inv, access), args.repeat)
            calls = len(client.requests()) / args.repeat
            one = timed(asg.describe_auto_scaling_groups, args.repeat)
        finally:
            control.stop_server(info.pid)
    t = info.timings
    print(f"gpufleet sandbox up, CLI wall: median {med(cli):.2f} s over {args.cli_repeat} "
          f"({', '.join(f'{s:.2f}' for s in cli)})")
    print(f"sandbox up in process: {total:.2f} s  (render {t['render_s']:.2f} s while the server started in "
          f"{t['server_s']:.2f} s, then apply {t['apply_s']:.2f} s)")
    print(f"render alone (3 stacks, in process): median {med(render):.2f} s over {args.repeat}")
    print(f"fresh fleet for a test: snapshot restore median {med(restore) * 1000:.0f} ms; "
          f"reset + re-apply median {med(fresh):.2f} s over {args.repeat}")
    print(f"status, in process: median {med(status) * 1000:.0f} ms, {calls:.0f} AWS calls; "
          f"one DescribeAutoScalingGroups: {med(one) * 1000:.0f} ms; ratio {med(status) / med(one):.1f}x")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

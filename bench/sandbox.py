"""Sandbox figures: server start, seeding, a fresh fleet for a test, and `gpufleet status` (in process).

    .venv/bin/python bench/sandbox.py [--repeat 5]

Status is compared with the cheapest call it makes (one DescribeAutoScalingGroups in a consumer
account through the same AwsAccess), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.sandbox import control
from gpufleet.automation.sandbox.seed import Seeder
from gpufleet.automation.status import fleet_status

REPO = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / ".gpufleet"
        t0 = time.perf_counter()
        info = control.up(REPO / "stacks", state)
        total = time.perf_counter() - t0
        try:
            os.environ.update(info.env)
            client = control.SandboxClient(info.endpoint)
            specs = control.load_fleet(REPO / "stacks")

            def reseed() -> None:
                client.reset(state=True)
                Seeder(info.endpoint, control.SANDBOX_CREDENTIALS).seed(specs)

            fresh = timed(reseed, args.repeat)
            client.reset(state=True)
            Path(info.inventory).write_text(json.dumps(Seeder(info.endpoint, control.SANDBOX_CREDENTIALS).seed(specs)))
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
    med = statistics.median
    print(f"sandbox up (start + seed 3 accounts): {total:.2f} s  (server {info.timings['server_s']:.2f} s, seed {info.timings['seed_s']:.2f} s)")
    print(f"fresh fleet for a test (reset + reseed): median {med(fresh):.2f} s over {args.repeat}")
    print(f"status, in process: median {med(status) * 1000:.0f} ms, {calls:.0f} AWS calls; "
          f"one DescribeAutoScalingGroups: {med(one) * 1000:.0f} ms; ratio {med(status) / med(one):.1f}x")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

"""Benchmark `gpufleet rebalance`: control-plane time and AWS calls to move 2, 8 and 32 nodes.

Runs in the sandbox (moto + the capacity extension on 127.0.0.1) holding the program rendered over a
generated copy of the reference stacks with a bigger h100 pool (80 nodes: training 40, inference 4). Each size moves
training -> inference and back, ``--repeat`` times; every move is the real service call the CLI
makes (journal, lock, release by exact termination, acquire, gate, join), timed in-process from
plan to DONE. The health gate is the accept-all gate and no orchestrator answers (the sandbox
emulates AWS alone; its inventory says so): what is measured is the control plane. No artificial waits: polls start at
50 ms. AWS calls come from the sandbox's request log. Ratios are against the 2-node move.

    .venv/bin/python bench/rebalance.py [--sizes 2,8,32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POOL_COUNT, TRAINING_NODES, INFERENCE_NODES = 80, 40, 4


def bigger_fleet(directory: Path) -> None:
    """The reference stacks with an 80-node h100 pool."""
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, directory / path.name)
    platform = directory / "Pulumi.platform.yaml"
    doc = yaml.safe_load(platform.read_text())
    doc["config"]["gpufleet:pools"][0]["count"] = POOL_COUNT
    platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, nodes in (("training", TRAINING_NODES), ("inference", INFERENCE_NODES)):
        path = directory / f"Pulumi.{name}.yaml"
        doc = yaml.safe_load(path.read_text())
        group = doc["config"]["gpufleet:nodeGroups"][0]
        group.update(initialNodes=nodes, maxNodes=POOL_COUNT)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2,8,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from gpufleet.automation.health.gate import AcceptAllGate
    from gpufleet.automation.rebalance import service
    from gpufleet.automation.rebalance.engine import Limits
    from gpufleet.automation.sandbox import control

    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-rebalance-"))
    stacks, state = work / "stacks", work / "state"
    stacks.mkdir()
    bigger_fleet(stacks)
    info = control.up(stacks, state)
    sandbox = control.SandboxClient(info.endpoint or "")
    os.environ.update(info.env)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    limits = Limits(poll_s=0.05, max_poll_s=0.5)
    rows = []
    try:
        for n in sizes:
            seconds, calls, by_service = [], [], collections.Counter()
            for _ in range(args.repeat):
                for source, dest in (("training", "inference"), ("inference", "training")):
                    sandbox.reset_log()
                    t0 = time.perf_counter()
                    result = service.rebalance(
                        service.RebalanceArgs(from_role=source, to_role=dest, nodes=n, execute=True,
                                              inventory=Path(info.inventory or "")),
                        gate=lambda _inv: AcceptAllGate(), limits=limits)
                    seconds.append(time.perf_counter() - t0)
                    assert result.state == "DONE", result.state
                    log = sandbox.requests()
                    calls.append(len(log))
                    if source == "training":
                        by_service.update(r["service"] for r in log)
            rows.append((n, statistics.median(seconds), statistics.median(calls),
                         {k: v // args.repeat for k, v in sorted(by_service.items())}))
    finally:
        control.down(state)
        shutil.rmtree(work, ignore_errors=True)

    base_s, base_calls = rows[0][1], rows[0][2]
    print(f"gpufleet rebalance in the sandbox: pool of {POOL_COUNT}, median of {args.repeat} x 2 moves\n"
          f"(there and back) per size; ratios vs the {rows[0][0]}-node move")
    print(f"{'nodes':>5} {'seconds':>8} {'x time':>7} {'AWS calls':>9} {'x calls':>8} {'calls/node':>10}")
    for n, s, c, _svc in rows:
        print(f"{n:>5} {s:>8.2f} {s / base_s:>7.2f} {c:>9.0f} {c / base_calls:>8.2f} {c / n:>10.1f}")
    print("calls by service (one move training -> inference):")
    for n, _s, _c, svc in rows:
        print(f"{n:>5}  " + ", ".join(f"{k} {v}" for k, v in svc.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

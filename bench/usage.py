"""Benchmark `gpufleet usage`'s computation: 30 days of a 64-node fleet, from a generated history.

The history is what the readers get from AWS and the journal: each Auto Scaling group's activity
(a launch and a termination per node life) and the journal's moves (operations with their
transition events), generated with a seed. What is timed is everything after the reads: parsing
activities into node lives and events into move phases, the ledger, the summary and the CSV.
Memory is the peak of Python allocations (tracemalloc, in a second, untimed pass). Sizes scale the days at a fixed fleet, so
events grow with the period; ratios are against the smallest size, measured in the same run.

    .venv/bin/python bench/usage.py [--days 30,60,120] [--nodes 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import time
import tracemalloc

from gpufleet.automation.inventory import StackNodeGroup
from gpufleet.automation.rebalance.journal import Event, Operation
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.usage import ledger, report, sources
from gpufleet.automation.usage.spans import PoolSlots
from gpufleet.infra.contract import NodeGroupOutput

T0 = 1_764_547_200.0
TARGET_30_DAYS_S = 3.0


def _group(role: str) -> StackNodeGroup:
    out = NodeGroupOutput(name=f"{role}-h100", pool="h100", instance_type="p5.48xlarge", asg_name=f"{role}-asg",
                          min_nodes=0, max_nodes=64, initial_nodes=32, orchestrator="slurm")
    return StackNodeGroup(stack=role, role=role, group=out, orchestrator="slurm")


def _stamp(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def history(days: int, nodes: int, seed: int = 7):
    """Activities per role and journal operations: every day 8 nodes go to inference at 08:00 and back at 16:00."""
    rng = random.Random(seed)
    acts: dict[str, list[dict]] = {"training": [], "inference": []}
    ops = []
    counter = iter(range(1, 10**9))

    def launch(role: str, at: float) -> tuple[str, float]:
        iid = f"i-{next(counter):017x}"
        acts[role].append({"Description": f"Launching a new EC2 instance: {iid}", "StatusCode": "Successful",
                           "StartTime": _stamp(at)})
        return iid, at

    def terminate(role: str, iid: str, at: float) -> None:
        acts[role].append({"Description": f"Terminating EC2 instance: {iid}", "StatusCode": "Successful",
                           "StartTime": _stamp(at - 30), "EndTime": _stamp(at)})

    running = {role: [launch(role, T0) for _ in range(nodes // 2)] for role in ("training", "inference")}
    for day in range(days):
        base = T0 + day * 86400
        for hour, src, dst in ((8, "training", "inference"), (16, "inference", "training")):
            at = base + hour * 3600 + rng.uniform(0, 300)
            victims = [running[src].pop(0) for _ in range(8)]
            for iid, _start in victims:
                terminate(src, iid, at + rng.uniform(60, 240))
            acquired = [launch(dst, at + rng.uniform(240, 400)) for _ in range(8)]
            running[dst] += acquired
            events = [Event(event_type="transition", state=s, step="", detail={}, at_ns=int((at + k * 60) * 1e9))
                      for k, s in enumerate(("LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED",
                                             "HEALTHY", "JOINED", "DONE"))]
            ops.append((Operation(op_id=f"rb-{day:03d}-{hour:02d}", state=MoveState.DONE, version=9,
                                  body={"plan": {"victims": [{"instance_id": v} for v, _s in victims]},
                                        "progress": {"acquired": [a for a, _s in acquired]}}), events))
        # now and then a node fails and its group replaces it five minutes later
        for role in ("training", "inference"):
            if rng.random() < 0.3:
                fail = base + rng.uniform(0, 86400)
                older = [k for k, (_iid, start) in enumerate(running[role]) if start < fail - 60]
                if not older:
                    continue
                iid, _start = running[role].pop(rng.choice(older))
                terminate(role, iid, fail)
                running[role].append(launch(role, fail + 300))
    return acts, ops, T0 + days * 86400


def run(days: int, nodes: int) -> tuple[float, float, int, int]:
    acts, ops, end = history(days, nodes)
    pool = _pool(nodes)

    def report_once() -> ledger.Ledger:
        spans = [s for role in acts for s in sources.node_spans(_group(role), acts[role], [], {}, role)]
        phases = [p for op, events in ops for p in sources.move_phases(op, events, end)]
        result = ledger.compute(T0, end, [pool], spans, phases)
        assert not (problems := ledger.reconcile(result, [pool])), problems[:3]
        for by in report.GROUPINGS:
            report.summarise(result, by)
        report.to_csv(result, [pool])
        return result

    t = time.perf_counter()
    result = report_once()
    seconds = time.perf_counter() - t
    # Memory in a second pass: tracemalloc slows allocation-heavy code several times over.
    tracemalloc.start()
    report_once()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, sum(len(a) for a in acts.values()) + sum(len(e) for _o, e in ops), len(result.rows)


def draw(path: str, days: int, nodes: int) -> None:
    from pathlib import Path

    from gpufleet.automation.usage import chart

    acts, ops, end = history(days, nodes)
    spans = [s for role in acts for s in sources.node_spans(_group(role), acts[role], [], {}, role)]
    phases = [p for op, events in ops for p in sources.move_phases(op, events, end)]
    chart.write(Path(path), ledger.compute(T0, end, [_pool(nodes)], spans, phases), phases)


def _pool(nodes: int) -> PoolSlots:
    return PoolSlots(name="h100", owner_stack="platform", owner_account_id="111111111111",
                     instance_type="p5.48xlarge", gpus_per_node=8, slots=nodes + 4, kind="odcr",
                     price_usd_per_node_hour=55.04)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="30,60,120")
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chart", metavar="FILE.png", help="Also draw the first size's report (gpufleet usage --chart).")
    args = parser.parse_args()
    sizes = [int(d) for d in args.days.split(",")]
    if args.chart:
        draw(args.chart, sizes[0], args.nodes)
    print(f"gpufleet usage over {args.nodes} nodes, median of {args.repeat}; ratios vs {sizes[0]} days")
    print(f"{'days':>5} {'events':>8} {'rows':>7} {'seconds':>8} {'x time':>7} {'x events':>8} {'peak MiB':>9}")
    base = None
    for days in sizes:
        runs = [run(days, args.nodes) for _ in range(args.repeat)]
        secs = statistics.median(r[0] for r in runs)
        peak, events, rows = runs[0][1], runs[0][2], runs[0][3]
        base = base or (secs, events)
        print(f"{days:>5} {events:>8} {rows:>7} {secs:>8.3f} {secs / base[0]:>7.2f} {events / base[1]:>8.2f} {peak:>9.1f}")
        if days == 30:
            verdict = "meets" if secs < TARGET_30_DAYS_S else "MISSES"
            print(f"      30 days: {secs:.3f} s, {verdict} the {TARGET_30_DAYS_S:.0f} s target")


if __name__ == "__main__":
    main()

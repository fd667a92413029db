"""Benchmark the capacity schedule: every policy and the oracle on 14 days of three seeded traces.

The pool: 16 x p5.48xlarge, training floor 2; the schedule: weekdays 09:00-15:00 America/Chicago,
5 inference nodes in the window, 1 outside, lead 15 + drain 5 minutes, KV-cache rule (up above 0.9
for 2 minutes, down below 0.5 for 10, step 1, at most 14). Moves into inference take
triangular(11, 13.5, 18) minutes after the drain, back to training triangular(3, 4, 6); each
preemption loses 10 node-minutes of training. The static split is the window's 5 nodes all day.
Traces (``gpufleet schedule trace``): steady weekdays (4 nodes in the window, 0.6 outside, 8 %
AR(1) noise), a holiday week (the second Wednesday to Friday), a surge (3x on the second Tuesday);
they start Monday 2026-03-02 and cross the US DST change.

Targets (issue 15): the best policy serves >= 99.9 % on the steady trace and >= 99 % on the surge
while keeping >= 95 % of the oracle's net training GPU-hours; a 30-day simulation of one policy
runs in under 5 s. The ``lend`` policy is schedule+reactive lending idle inference slots through an
interruptible reservation (reclaimed drain + EC2's 2-minute warning + lead time before a window).

    .venv/bin/python bench/schedule.py [--seed 1] [--days 14] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from gpufleet.automation.schedule.policies import Policy
from gpufleet.automation.schedule.simulate import Setup, simulate
from gpufleet.automation.schedule.study import run_study
from gpufleet.automation.schedule.trace import TraceKind, synthesize
from gpufleet.infra.model import PoolSchedule, ReactiveRule, ScheduleWindow, ServingSignal

BEST = Policy.SCHEDULE_REACTIVE
TARGET_SERVED = {TraceKind.STEADY: 0.999, TraceKind.SURGE: 0.99}
TARGET_TRAINING = 0.95
TARGET_30_DAYS_S = 5.0

SCHEDULE = PoolSchedule(
    pool="bench-h100",
    windows=(ScheduleWindow(days=frozenset(range(5)), start=dt.time(9), end=dt.time(15), timezone="America/Chicago",
                            inference_nodes=5),),
    inference_nodes_outside=1, training_floor=2, lead_time_minutes=15, drain_minutes=5,
    reactive=ReactiveRule(signal=ServingSignal.KV_CACHE, up_above=0.9, down_below=0.5, up_minutes=2, down_minutes=10,
                          step=1, max_nodes=14),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup = Setup(schedule=SCHEDULE, count=16, initial_inference=5, seed=args.seed)
    rows = []
    met = True
    for kind in TraceKind:
        trace = synthesize(kind, days=args.days, seed=args.seed)
        started = time.perf_counter()
        study = run_study(trace, setup, list(Policy))
        elapsed = time.perf_counter() - started
        for o in study.outcomes:
            rows.append({"trace": str(kind), **o.to_dict(), "moves_per_day": o.moves / args.days})
            if o.policy == BEST:
                met &= o.served_fraction >= TARGET_SERVED.get(kind, 0.0)
                met &= (o.training_ratio_to_oracle or 0.0) >= TARGET_TRAINING
        if not args.json:
            print(f"{kind}: {len(trace.demand)} minutes, every policy and the oracle in {elapsed:.1f} s", flush=True)
    month = synthesize(TraceKind.STEADY, days=30, seed=args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    simulate(month, setup, BEST)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    met &= cpu < TARGET_30_DAYS_S
    if args.json:
        print(json.dumps({"rows": rows, "simulate_30_days": {"policy": str(BEST), "wall_s": wall, "cpu_s": cpu},
                          "targets_met": met}, indent=2))
        return 0 if met else 1
    # 80 columns: the table goes into docs/schedule.md as it is printed
    print(f"\n{'trace':<7} {'policy':<17} {'served':>9} {'train/oracle':>12} {'moves/day':>9} {'lost GPU-h':>10} "
          f"{'idle GPU-h':>10}")
    for r in rows:
        ratio = r["training_ratio_to_oracle"]
        print(f"{r['trace']:<7} {r['policy']:<17} {r['served_fraction']:>9.4%} {ratio:>12.1%} {r['moves_per_day']:>9.1f} "
              f"{r['lost_training_gpu_hours']:>10.0f} {r['idle_reserved_gpu_hours']:>10.0f}")
    # lending (issue 15 item 4): net training GPU-hours beside the same moves without it and the static split
    print(f"\n{'net training GPU-h':<18} {Policy.LEND!s:>8} {BEST!s:>18} {'change':>7} {Policy.STATIC!s:>8} {'change':>7}")
    for kind in TraceKind:
        net = {r["policy"]: r["training_gpu_hours"] - r["lost_training_gpu_hours"] for r in rows if r["trace"] == kind}
        lend, moved, static = net[Policy.LEND], net[BEST], net[Policy.STATIC]
        print(f"{kind!s:<18} {lend:>8.0f} {moved:>18.0f} {lend / moved - 1:>+7.2%} {static:>8.0f} {lend / static - 1:>+7.1%}")
    print(f"\n30-day simulation of {BEST}: {cpu:.2f} s CPU ({wall:.2f} s wall; target < {TARGET_30_DAYS_S:.0f} s)")
    print(f"targets ({BEST}: >= 99.9 % served steady, >= 99 % surge,\n"
          f"  >= 95 % of the oracle's training): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())

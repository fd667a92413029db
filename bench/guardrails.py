"""Benchmark the guardrails: time to evaluate every rule over the rendered reference fleet, and over
copies of it (k fleets side by side: k times the resources and stacks), as ratios to the reference
measured in the same run. Also the mutation suite's catch rate, recomputed here.

    .venv/bin/python bench/guardrails.py [--copies 1,4,16] [--repeat 5]
    .venv/bin/python bench/guardrails.py --json [--mutation ID ...]

With ``--json``, no timing: the findings of the intended rule for each seeded mistake (all, or the
``--mutation`` ids), one JSON object a line, in the shape of ``gpufleet plan --json``'s findings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "guardrails"))
sys.path.insert(0, str(REPO))

from guardrail_fleet import Fleet  # noqa: E402
from test_guardrail_mutations import MUTATIONS  # noqa: E402

from gpufleet.infra import stackfile  # noqa: E402
from gpufleet.infra.guardrails import FleetContext, evaluate  # noqa: E402
from gpufleet.infra.offline.render import render_fleet  # noqa: E402


def copies_of(fleet: Fleet, k: int):
    """k renamed copies of every stack (same accounts: the rules' cost, not their verdicts, is measured)."""
    resources = []
    for i in range(k):
        for r in fleet.resources():
            resources.append(dataclasses.replace(r, stack=f"{r.stack}-{i}", urn=f"{r.urn}-{i}", name=f"{r.name}-{i}"))
    return resources


def timed(resources, ctx, repeat: int) -> tuple[float, int]:
    samples, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = len(evaluate(resources, ctx))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", default="1,4,16")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="the seeded mistakes' findings as JSON lines, no timing")
    parser.add_argument("--mutation", action="append", default=[], metavar="ID", help="with --json: only this one")
    args = parser.parse_args()
    unknown = sorted(set(args.mutation) - {m.id for m in MUTATIONS})
    if unknown:
        parser.error(f"--mutation {unknown[0]}: no such mutation (ids: {', '.join(m.id for m in MUTATIONS)})")
    specs = [stackfile.load_stack(p) for p in stackfile.discover_stacks(REPO / "stacks")]
    start = time.perf_counter()
    fleet = Fleet(specs=specs, stacks={r.spec.name: r for r in render_fleet(specs)})
    if args.json:
        for m in (m for m in MUTATIONS if not args.mutation or m.id in args.mutation):
            for f in fleet.findings(m.apply(fleet), m.specs(fleet) if m.specs else None):
                if f.rule == m.rule:
                    print(json.dumps(f.to_dict()))
        return
    print(f"render reference fleet: {time.perf_counter() - start:.2f} s, {len(fleet.resources())} resources")
    ctx = FleetContext.from_specs(specs)
    base = None
    for k in (int(c) for c in args.copies.split(",")):
        resources = copies_of(fleet, k)
        seconds, found = timed(resources, ctx, args.repeat)
        base = base or seconds / k
        print(f"evaluate {k:>3} x fleet: {len(resources):>5} resources  {seconds * 1000:8.1f} ms  "
              f"({seconds / (base * k):.2f} x linear)  findings {found}")
    caught = only = 0
    for m in MUTATIONS:
        fired = {f.rule for f in fleet.findings(m.apply(fleet), m.specs(fleet) if m.specs else None)}
        caught += m.rule in fired
        only += fired == {m.rule}
    print(f"mutation score: {caught}/{len(MUTATIONS)} caught by the intended rule;\n"
          f"{only}/{len(MUTATIONS)} caught by that rule alone")


if __name__ == "__main__":
    main()

"""`gpufleet schedule simulate`: the policies over one trace, each beside the oracle; the pool and
its split come from the stack files."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.schedule.model import Deadline
from gpufleet.automation.schedule.oracle import solve
from gpufleet.automation.schedule.policies import Policy
from gpufleet.automation.schedule.simulate import LeadTime, Outcome, Setup, simulate
from gpufleet.automation.schedule.trace import Trace
from gpufleet.infra import catalog, stackfile
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.model import Role, StackSpec


@dataclass(frozen=True, kw_only=True)
class Study:
    """Every policy asked for, over one trace, with its ratios to the oracle."""

    pool: str
    """The simulated pool."""
    minutes: int
    """Trace length."""
    start: dt.datetime
    """Trace start (UTC)."""
    outcomes: tuple[Outcome, ...]
    """One per policy, in the order asked."""

    def to_dict(self) -> dict[str, object]:
        return {"pool": self.pool, "minutes": self.minutes, "start": self.start.isoformat(),
                "outcomes": [o.to_dict() for o in self.outcomes]}


def setup_from_stacks(specs: Sequence[StackSpec], pool: str | None, *, seed: int = 0,
                      block_end: dt.datetime | None = None, block_start: dt.datetime | None = None,
                      **moves: Any) -> Setup:
    """The pool's schedule, size and static split (the inference stack's initialNodes) from the stack files."""
    stackfile.check_fleet(specs)  # the rules across stack files, the schedule's among them
    platform = next((s for s in specs if s.role is Role.PLATFORM), None)
    if platform is None or not platform.schedule:
        raise BadInputError("no gpufleet:schedule in a platform stack file", "see docs/schedule.md")
    names = [s.pool for s in platform.schedule]
    if pool is not None and pool not in names:
        raise BadInputError(f"--pool {pool}: not scheduled in {platform.source}", f"scheduled: {', '.join(names)}")
    schedule = next(s for s in platform.schedule if s.pool == (pool or names[0]))
    spec = next(p for p in platform.pools if p.name == schedule.pool)
    inference = sum(g.initial_nodes for s in specs if s.role is Role.INFERENCE for g in s.node_groups
                    if g.pool == spec.name)
    deadline = None
    if block_end is not None:
        deadline = Deadline(start=block_start or dt.datetime.min.replace(tzinfo=dt.UTC), end=block_end)
    return Setup(schedule=schedule, count=spec.count, initial_inference=min(inference, spec.count - schedule.training_floor),
                 gpus_per_node=catalog.lookup(spec.instance_type).gpus, seed=seed, deadline=deadline, **moves)


def lead_time(text: str, flag: str) -> LeadTime:
    """``LOW,MODE,HIGH`` minutes (or one number: always that long)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInputError(f"{flag} {text!r}: expected LOW,MODE,HIGH minutes, e.g. 11,13.5,18") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise BadInputError(f"{flag} {text!r}: expected LOW,MODE,HIGH minutes, e.g. 11,13.5,18")
    try:
        return LeadTime(low=values[0], mode=values[1], high=values[2])
    except BadInputError as err:
        raise BadInputError(f"{flag} {text!r}: {err.message}") from None


def run_study(trace: Trace, setup: Setup, policies: Sequence[Policy], *, keep_series: bool = False) -> Study:
    """Simulate each policy and the oracle; fill each outcome's ratios to the oracle."""
    if not trace.demand:
        raise BadInputError("the trace is empty")
    oracle = solve(trace, setup)
    out = []
    for policy in dict.fromkeys(policies):
        outcome = oracle if policy is Policy.ORACLE else simulate(trace, setup, policy, keep_series=keep_series)
        out.append(dataclasses.replace(
            outcome,
            served_ratio_to_oracle=_ratio(outcome.served_fraction, oracle.served_fraction),
            training_ratio_to_oracle=_ratio(outcome.net_training_gpu_hours, oracle.net_training_gpu_hours),
            series=outcome.series if keep_series else {}))
    return Study(pool=setup.schedule.pool, minutes=len(trace.demand), start=trace.start, outcomes=tuple(out))


def _ratio(value: float, reference: float) -> float | None:
    return None if reference <= 0 else value / reference

"""`gpufleet schedule show`: the split each scheduled pool will have over the coming hours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpufleet.automation.schedule import plan
from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.model import Deadline, PoolFleet
from gpufleet.infra import stackfile
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.model import StackSpec

STEP = dt.timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A span in which a pool's planned split does not change."""

    pool: str
    """Pool name."""
    start: dt.datetime
    """First minute (UTC)."""
    end: dt.datetime
    """First minute after the span (UTC)."""
    inference: int
    """Inference nodes planned (moves start one lead time ahead of a window)."""
    training: int
    """Training nodes planned (the rest of the pool)."""
    serving: int
    """What the windows ask to be serving in this span (the target minus capacity still on its way)."""

    def to_dict(self) -> dict[str, object]:
        return {"pool": self.pool, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "inference": self.inference, "training": self.training, "serving": self.serving}


@dataclass(frozen=True, kw_only=True)
class SchedulePlan:
    """The planned split of every scheduled pool from ``start`` for ``hours``."""

    source: str
    """The platform stack file."""
    start: dt.datetime
    """From (UTC)."""
    hours: int
    """How far."""
    segments: tuple[Segment, ...]
    """Per pool, in time order."""
    findings: tuple[str, ...] = ()
    """Windows that cannot be served with the capacity that will exist (Capacity Block ends, the floor)."""

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "start": self.start.isoformat(), "hours": self.hours,
                "segments": [s.to_dict() for s in self.segments], "findings": list(self.findings)}


def show(specs: Sequence[StackSpec], start: dt.datetime, hours: int,
         deadlines: Mapping[str, Deadline] | None = None) -> SchedulePlan:
    """The planned split from ``start`` (aware) over ``hours`` hours: the decision, minute by minute,
    without serving signals, for a fleet that reaches each target (``deadlines``: Capacity Blocks)."""
    stackfile.check_fleet(specs)  # the rules across stack files, the schedule's among them
    platform = next((s for s in specs if s.role.value == "platform"), None)
    if platform is None:
        raise BadInputError("no platform stack among the stack files: the schedule lives there")
    if not platform.schedule:
        raise BadInputError(f"{platform.source} has no gpufleet:schedule", "see docs/schedule.md for the keys")
    if hours < 1:
        raise BadInputError(f"--hours must be at least 1, got {hours}")
    start = start.astimezone(dt.UTC).replace(second=0, microsecond=0)
    counts = {p.name: p.count for p in platform.pools}
    spares = {p.name: p.spares for p in platform.pools}
    segments = []
    findings: list[str] = []
    for schedule in platform.schedule:
        count = counts[schedule.pool]
        fleet = PoolFleet(pool=schedule.pool, count=count, spares=spares[schedule.pool],
                          inference=schedule.inference_nodes_outside,
                          training=count - spares[schedule.pool] - schedule.inference_nodes_outside)
        current: tuple[int, int, int] | None = None
        since = start
        for m in range(hours * 60 + 1):
            at = start + m * STEP
            value = None
            if m < hours * 60:
                decision = decide(at, [schedule], {schedule.pool: fleet}, (), {}, deadlines or {})
                findings.extend(f for f in decision.findings if f not in findings)
                target = decision.targets[0]
                fleet = PoolFleet(pool=schedule.pool, count=count, spares=spares[schedule.pool],
                                  inference=target.inference, training=target.training)
                value = (target.inference, target.training, min(target.inference, plan.level(schedule, at)))
            if value != current:
                if current is not None:
                    segments.append(Segment(pool=schedule.pool, start=since, end=at, inference=current[0],
                                            training=current[1], serving=current[2]))
                current, since = value, at
    return SchedulePlan(source=platform.source, start=start, hours=hours, segments=tuple(segments),
                        findings=tuple(findings))

"""`gpufleet schedule show`: the split each scheduled pool will have over the coming hours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.automation.schedule import plan
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

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "start": self.start.isoformat(), "hours": self.hours,
                "segments": [s.to_dict() for s in self.segments]}


def show(specs: Sequence[StackSpec], start: dt.datetime, hours: int) -> SchedulePlan:
    """The planned split from ``start`` (aware) over ``hours`` hours, from the platform stack's schedule."""
    platform = next((s for s in specs if s.role.value == "platform"), None)
    if platform is None:
        raise BadInputError("no platform stack among the stack files: the schedule lives there")
    if not platform.schedule:
        raise BadInputError(f"{platform.source} has no gpufleet:schedule", "see docs/schedule.md for the keys")
    if hours < 1:
        raise BadInputError(f"--hours must be at least 1, got {hours}")
    start = start.astimezone(dt.UTC).replace(second=0, microsecond=0)
    counts = {p.name: p.count for p in platform.pools}
    segments = []
    for schedule in platform.schedule:
        ahead = plan.lead(schedule)
        current: tuple[int, int] | None = None
        since = start
        for m in range(hours * 60 + 1):
            at = start + m * STEP
            value = (plan.level_ahead(schedule, at, ahead), plan.level(schedule, at)) if m < hours * 60 else None
            if value != current:
                if current is not None:
                    segments.append(Segment(pool=schedule.pool, start=since, end=at, inference=current[0],
                                            training=counts[schedule.pool] - current[0], serving=current[1]))
                current, since = value, at
    return SchedulePlan(source=platform.source, start=start, hours=hours, segments=tuple(segments))

"""Demand traces: read one (CSV ``time,demand`` in inference nodes, or ``time,rps`` with a per-node
rate), and synthesize seeded ones (weekday windows, noise, a holiday week, a surge day)."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import math
import random
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from gpufleet.infra.errors import ConfigError

MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class Trace:
    """Inference nodes needed, one value a minute from ``start``."""

    start: dt.datetime
    """The first minute (aware, UTC)."""
    demand: tuple[float, ...]
    """Inference nodes needed in each minute."""

    def at(self, minute: int) -> dt.datetime:
        return self.start + minute * MINUTE


def read_trace(path: Path, per_node: float | None = None) -> Trace:
    """A CSV trace; rows may be sparser than a minute (each value holds until the next row).
    Bad input names the file, the row and the value (exit 2)."""
    source = str(path)
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except FileNotFoundError:
        raise ConfigError(source, "(file)", None, "trace file not found") from None
    column = "rps" if per_node is not None else "demand"
    if not rows or "time" not in rows[0] or column not in rows[0]:
        header = list(rows[0]) if rows else []
        raise ConfigError(source, "(header)", header, f"expected a CSV with columns time,{column}",
                          None if per_node is not None else "requests per second? give --per-node RATE")
    times: list[dt.datetime] = []
    values: list[float] = []
    for i, row in enumerate(rows, start=2):
        try:
            when = dt.datetime.fromisoformat(row["time"])
        except (TypeError, ValueError):
            raise ConfigError(source, f"row {i}.time", row["time"], "not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise ConfigError(source, f"row {i}.time", row["time"], "needs a UTC offset (e.g. 2026-03-02T09:00:00-06:00)")
        try:
            value = float(row[column])
        except (TypeError, ValueError):
            raise ConfigError(source, f"row {i}.{column}", row[column], "not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(source, f"row {i}.{column}", row[column], "must be a finite number >= 0")
        if times and when <= times[-1]:
            raise ConfigError(source, f"row {i}.time", row["time"], "times must increase")
        times.append(when.astimezone(dt.UTC))
        values.append(value / per_node if per_node is not None else value)
    start = times[0].replace(second=0, microsecond=0)
    minutes = int((times[-1] - start) / MINUTE) + 1
    demand = []
    j = 0
    for m in range(minutes):
        at = start + m * MINUTE
        while j + 1 < len(times) and times[j + 1] <= at:
            j += 1
        demand.append(values[j])
    return Trace(start=start, demand=tuple(demand))


def write_trace(trace: Trace, path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["time", "demand"])
        for m, value in enumerate(trace.demand):
            writer.writerow([trace.at(m).isoformat(), f"{value:.2f}"])


class TraceKind(enum.StrEnum):
    """The synthetic traces of the benchmark."""

    STEADY = "steady"
    HOLIDAY = "holiday"
    """The second week's Wednesday to Friday are holidays: outside-window demand all day."""
    SURGE = "surge"
    """A heat wave: three times the usual calls on the second Tuesday."""


@dataclass(frozen=True, kw_only=True)
class TraceShape:
    """What a synthetic trace looks like."""

    window_nodes: float = 4.0
    """Mean inference nodes needed inside the window."""
    outside_nodes: float = 0.6
    """Mean inference nodes needed outside it."""
    start_local: dt.time = dt.time(9, 0)
    """Window opening, local."""
    end_local: dt.time = dt.time(15, 0)
    """Window closing, local."""
    timezone: str = "America/Chicago"
    """The callers' time zone."""
    noise: float = 0.08
    """Relative standard deviation of the minute-to-minute noise (an AR(1) process)."""
    ramp_minutes: int = 20
    """Demand rises over this many minutes after the window opens and falls before it closes."""
    surge_factor: float = 3.0
    """Surge day: this many times the usual in-window demand."""


# Monday before the US spring-forward (2026-03-08): two weeks cross a DST change.
DEFAULT_START = dt.datetime(2026, 3, 2, 0, 0, tzinfo=zoneinfo.ZoneInfo("America/Chicago"))


def synthesize(kind: TraceKind, *, days: int, seed: int, shape: TraceShape = TraceShape(),
               start: dt.datetime = DEFAULT_START) -> Trace:
    """A seeded synthetic trace of ``days`` days starting at ``start`` (local midnight of a Monday)."""
    rng = random.Random(f"{kind}:{seed}")
    tz = zoneinfo.ZoneInfo(shape.timezone)
    first = start.astimezone(dt.UTC)
    local_start_day = start.astimezone(tz).date()
    ar = 0.0
    demand = []
    for m in range(days * 1440):
        local = (first + m * MINUTE).astimezone(tz)
        day_index = (local.date() - local_start_day).days
        weekday = local.weekday() < 5
        holiday = kind is TraceKind.HOLIDAY and day_index in (9, 10, 11)
        minute_of_day = local.hour * 60 + local.minute
        opens = shape.start_local.hour * 60 + shape.start_local.minute
        closes = shape.end_local.hour * 60 + shape.end_local.minute
        base = shape.outside_nodes
        if weekday and not holiday and opens <= minute_of_day < closes:
            ramp = min(1.0, (minute_of_day - opens + 1) / shape.ramp_minutes, (closes - minute_of_day) / shape.ramp_minutes)
            peak = shape.window_nodes * (shape.surge_factor if kind is TraceKind.SURGE and day_index == 8 else 1.0)
            base = shape.outside_nodes + (peak - shape.outside_nodes) * ramp
        ar = 0.9 * ar + math.sqrt(1 - 0.81) * rng.gauss(0.0, 1.0)
        demand.append(round(max(0.0, base * (1 + shape.noise * ar)), 2))
    return Trace(start=first, demand=tuple(demand))

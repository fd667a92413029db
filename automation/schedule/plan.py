"""The split a schedule asks for at an instant: windows in their own time zone, DST-correct
(zoneinfo), looking ahead one lead time so capacity is serving when a window opens."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from gpufleet.infra.model import PoolSchedule, ScheduleWindow


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def window_open(window: ScheduleWindow, at: dt.datetime) -> bool:
    """Whether ``window`` is open at the aware instant ``at``."""
    local = at.astimezone(_zone(window.timezone))
    return local.weekday() in window.days and window.start <= local.time() < window.end


def level(schedule: PoolSchedule, at: dt.datetime) -> int:
    """Inference nodes the windows ask for at ``at`` (the largest open window, else outside)."""
    wanted = [w.inference_nodes for w in schedule.windows if window_open(w, at)]
    return max(wanted) if wanted else schedule.inference_nodes_outside


def openings(window: ScheduleWindow, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """(open, close) as aware UTC instants of every occurrence of ``window`` that opens in (start, end]
    or is open at ``start``."""
    tz = _zone(window.timezone)
    first = start.astimezone(tz).date() - dt.timedelta(days=1)
    last = end.astimezone(tz).date()
    out = []
    day = first
    while day <= last:  # bounded: one iteration per local day of the interval
        if day.weekday() in window.days:
            # combine with tzinfo: a time in the spring-forward gap resolves as zoneinfo does (fold=0)
            opens = dt.datetime.combine(day, window.start, tzinfo=tz).astimezone(dt.UTC)
            closes = dt.datetime.combine(day, window.end, tzinfo=tz).astimezone(dt.UTC)
            if start < opens <= end or opens <= start < closes:
                out.append((opens, closes))
        day += dt.timedelta(days=1)
    return out


def level_ahead(schedule: PoolSchedule, now: dt.datetime, ahead: dt.timedelta) -> int:
    """The most inference the windows ask for at any instant in [now, now + ahead]: a move started
    now is serving by the end of that span."""
    best = max(level(schedule, now), level(schedule, now + ahead))
    for window in schedule.windows:
        # a window longer than the span that opens inside it is still open at its end: seen above
        if window.inference_nodes > best and _length(window) <= ahead and openings(window, now, now + ahead):
            best = window.inference_nodes
    return best


@functools.cache
def _length(window: ScheduleWindow) -> dt.timedelta:
    # the shortest a window can be: 23-hour days shorten none of them (each lies within one day),
    # but the spring-forward gap can, by an hour
    day = dt.date(2000, 1, 1)
    return dt.datetime.combine(day, window.end) - dt.datetime.combine(day, window.start) - dt.timedelta(hours=1)


def lead(schedule: PoolSchedule) -> dt.timedelta:
    """How far ahead a move into inference must start: drain and checkpoint, then boot to serving."""
    return dt.timedelta(minutes=schedule.lead_time_minutes + schedule.drain_minutes)

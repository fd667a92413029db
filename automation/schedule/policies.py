"""The policies a simulation compares, each as the inputs it gives the one decision function."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import statistics
import zoneinfo
from collections.abc import Sequence

from gpufleet.infra.model import LendRule, PoolSchedule, ReactiveRule, ServingSignal


class Policy(enum.StrEnum):
    """How the split is chosen."""

    STATIC = "static"
    """The stack files' split, never moved."""
    SCHEDULE = "schedule"
    """The windows alone."""
    REACTIVE = "reactive"
    """Serving signals alone, from the outside level."""
    SCHEDULE_REACTIVE = "schedule+reactive"
    """The windows, corrected by the signals."""
    FORECAST = "forecast"
    """Seasonal forecast from past days (same local time, same kind of day), corrected by the signals."""
    LEND = "lend"
    """schedule+reactive, lending idle inference slots to training (the schedule's ``lend``, else up to
    the pool less the training floor)."""
    ORACLE = "oracle"
    """Perfect foresight (``gpufleet.automation.schedule.oracle``)."""


def default_rule(schedule: PoolSchedule, count: int) -> ReactiveRule:
    return ReactiveRule(signal=ServingSignal.KV_CACHE, up_above=0.9, down_below=0.5, up_minutes=2,
                        down_minutes=10, step=1, max_nodes=count - schedule.training_floor)


def schedule_for(policy: Policy, schedule: PoolSchedule, count: int) -> PoolSchedule:
    """The schedule the decision gets under ``policy`` (the forecast also gets ``forecast_nodes``)."""
    rule = schedule.reactive or default_rule(schedule, count)
    if policy is Policy.LEND:
        return dataclasses.replace(schedule, reactive=rule,
                                   lend=schedule.lend or LendRule(max_nodes=count - schedule.training_floor))
    # every other policy moves without lending: the lend policy's figures are beside theirs
    schedule = dataclasses.replace(schedule, lend=None)
    if policy is Policy.SCHEDULE:
        return dataclasses.replace(schedule, reactive=None)
    if policy is Policy.SCHEDULE_REACTIVE:
        return dataclasses.replace(schedule, reactive=rule)
    if policy in (Policy.REACTIVE, Policy.FORECAST):
        return dataclasses.replace(schedule, windows=(), reactive=rule)
    raise ValueError(f"{policy} does not call the decision")


FORECAST_DAYS = 7
FORECAST_SPREAD_MINUTES = 10
FORECAST_HEADROOM = 1.15


def seasonal_forecast(demand: Sequence[float], start: dt.datetime, minute: int, ahead_minutes: int,
                      timezone: str) -> float | None:
    """Nodes needed at ``minute + ahead_minutes``, from the same local time on the past week's days
    of the same kind (weekday or weekend): the median of each day's peak around that time, plus
    headroom. Reads only minutes before ``minute``. None without such a day."""
    tz = zoneinfo.ZoneInfo(timezone)
    target = (start + dt.timedelta(minutes=minute + ahead_minutes)).astimezone(tz)
    peaks = []
    for back in range(1, FORECAST_DAYS + 1):
        # the same wall-clock time: across a DST change that is 23 or 25 hours back, not 24
        past_local = dt.datetime.combine(target.date() - dt.timedelta(days=back), target.time(), tzinfo=tz)
        if (past_local.weekday() < 5) != (target.weekday() < 5):
            continue
        index = int((past_local.astimezone(dt.UTC) - start) / dt.timedelta(minutes=1))
        low, high = index - FORECAST_SPREAD_MINUTES, min(index + FORECAST_SPREAD_MINUTES, minute)
        if low < 0 or high <= low:
            continue
        peaks.append(max(demand[low:high]))
    return statistics.median(peaks) * FORECAST_HEADROOM if peaks else None

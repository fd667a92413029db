"""Builders for the schedule tests: a pool schedule in code."""

from __future__ import annotations

import datetime as dt

from gpufleet.infra.model import PoolSchedule, ReactiveRule, ScheduleWindow, ServingSignal

CHICAGO = "America/Chicago"


def window(start: str = "09:00", end: str = "15:00", nodes: int = 5, tz: str = CHICAGO,
           days: frozenset[int] = frozenset(range(5))) -> ScheduleWindow:
    return ScheduleWindow(days=days, start=dt.time.fromisoformat(start), end=dt.time.fromisoformat(end), timezone=tz,
                          inference_nodes=nodes)


def pool_schedule(*windows: ScheduleWindow, outside: int = 1, floor: int = 2, lead: float = 15, drain: float = 5,
                  reactive: ReactiveRule | None = None) -> PoolSchedule:
    return PoolSchedule(pool="p", windows=windows or (window(),), inference_nodes_outside=outside, training_floor=floor,
                        lead_time_minutes=lead, drain_minutes=drain, reactive=reactive)


def kv_rule(max_nodes: int = 14) -> ReactiveRule:
    return ReactiveRule(signal=ServingSignal.KV_CACHE, up_above=0.9, down_below=0.5, up_minutes=2, down_minutes=10,
                        step=1, max_nodes=max_nodes)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)

"""Shared builders for the schedule tests: a pool schedule in code, a copy of the stack files."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from gpufleet.infra.model import PoolSchedule, ReactiveRule, ScheduleWindow, ServingSignal

REPO = Path(__file__).resolve().parents[3]
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


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the reference stack files to break."""
    target = tmp_path / "stacks"
    target.mkdir()
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, target / path.name)
    return target

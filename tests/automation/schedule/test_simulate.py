"""The simulator: Capacity Block deadlines honoured, lead times seeded, traces read with errors
that name the file, row and value."""

from __future__ import annotations

import datetime as dt

import pytest

from gpufleet.automation.schedule.model import Deadline
from gpufleet.automation.schedule.policies import Policy
from gpufleet.automation.schedule.simulate import Setup, simulate
from gpufleet.automation.schedule.trace import TraceKind, read_trace, synthesize, write_trace
from gpufleet.infra.errors import ConfigError
from tests.automation.schedule.builders import kv_rule, pool_schedule, utc, window

MONDAY = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
BLOCK = Deadline(start=utc("2026-03-01T11:30"), end=utc("2026-03-10T11:30"))


def block_setup(schedule=None, **kw) -> Setup:
    return Setup(schedule=schedule or pool_schedule(reactive=kv_rule()), count=16, initial_inference=1,
                 deadline=BLOCK, **kw)


def test_a_capacity_block_deadline_is_honoured():
    trace = synthesize(TraceKind.STEADY, days=2, seed=1, start=MONDAY)
    termination = int((BLOCK.termination - trace.start) / dt.timedelta(minutes=1))
    planned = simulate(trace, block_setup(), Policy.SCHEDULE_REACTIVE, keep_series=True)
    assert planned.unplanned_kills == 0
    assert planned.series["training"][termination - 1] == 0  # drained and checkpointed before EC2 acts
    assert planned.series["training"][termination - 30] == 15  # ... and not long before
    assert set(planned.series["inference"][termination:]) == {0}
    # the static split leaves training running into the termination: the check can fail
    static = simulate(trace, block_setup(), Policy.STATIC)
    assert static.unplanned_kills == 15
    assert static.lost_training_gpu_hours > planned.lost_training_gpu_hours


def test_a_window_the_block_ends_inside_is_reported_and_not_served_from_the_block():
    schedule = pool_schedule(window("18:00", "22:00", nodes=5, tz="Asia/Tokyo"))
    trace = synthesize(TraceKind.STEADY, days=2, seed=1, start=MONDAY)
    outcome = simulate(trace, block_setup(schedule), Policy.SCHEDULE, keep_series=True)
    opens = int((utc("2026-03-10T09:00") - trace.start) / dt.timedelta(minutes=1))
    assert max(outcome.series["inference"][opens - 60:]) <= 1
    assert any("2026-03-10 09:00-13:00 UTC cannot be served" in f for f in outcome.findings)
    # Monday's Tokyo window (09:00 UTC, before the block's last day) was served with 5
    assert outcome.series["inference"][9 * 60 + 30] == 5


def test_lead_times_are_seeded():
    trace = synthesize(TraceKind.STEADY, days=2, seed=1, start=MONDAY)
    setup = Setup(schedule=pool_schedule(reactive=kv_rule()), count=16, initial_inference=1, seed=5)
    again = Setup(schedule=pool_schedule(reactive=kv_rule()), count=16, initial_inference=1, seed=5)
    other = Setup(schedule=pool_schedule(reactive=kv_rule()), count=16, initial_inference=1, seed=6)
    a, b, c = (simulate(trace, s, Policy.SCHEDULE, keep_series=True) for s in (setup, again, other))
    assert a.series == b.series
    assert a.series["inference"] != c.series["inference"]


def test_synthetic_traces_round_trip_and_the_surge_triples_the_window(tmp_path):
    steady = synthesize(TraceKind.STEADY, days=14, seed=2)
    surge = synthesize(TraceKind.SURGE, days=14, seed=2)
    day = slice(8 * 1440, 9 * 1440)  # the second Tuesday
    assert max(surge.demand[day]) > 2.5 * max(steady.demand[day])
    holiday = synthesize(TraceKind.HOLIDAY, days=14, seed=2)
    assert max(holiday.demand[9 * 1440:12 * 1440]) < 1.0 < max(steady.demand[9 * 1440:12 * 1440])
    path = tmp_path / "t.csv"
    write_trace(steady, path)
    again = read_trace(path)
    assert again.start == steady.start and again.demand == steady.demand


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("when,demand\n2026-03-09T00:00:00+00:00,1\n", "(header)", "columns time,demand"),
    ("time,demand\n2026-03-09T00:00:00+00:00,1\nyesterday,2\n", "row 3.time", "ISO 8601"),
    ("time,demand\n2026-03-09T00:00:00,1\n", "row 2.time", "UTC offset"),
    ("time,demand\n2026-03-09T00:00:00+00:00,-1\n", "row 2.demand", ">= 0"),
    ("time,demand\n2026-03-09T00:01:00+00:00,1\n2026-03-09T00:00:00+00:00,1\n", "row 3.time", "increase"),
])
def test_bad_traces_name_the_file_row_and_value(tmp_path, text, key, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_trace(path)
    assert caught.value.key == key and caught.value.source == str(path) and problem in caught.value.message + (caught.value.hint or "")


def test_requests_per_second_become_nodes(tmp_path):
    path = tmp_path / "rps.csv"
    path.write_text("time,rps\n2026-03-09T00:00:00+00:00,30\n2026-03-09T00:03:00+00:00,90\n")
    trace = read_trace(path, per_node=30.0)
    assert trace.demand == (1.0, 1.0, 1.0, 3.0)

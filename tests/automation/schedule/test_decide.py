"""The decision function: windows in their time zone across DST, lead time, moves in flight,
reactive hysteresis, Capacity Block deadlines."""

from __future__ import annotations

import datetime as dt

from gpufleet.automation.schedule import plan
from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.model import Deadline, Move, PoolFleet, PoolSignals, Side
from tests.automation.schedule.builders import kv_rule, pool_schedule, utc, window

FLEET = {"p": PoolFleet(pool="p", count=16, inference=1, training=15)}


def moves_at(now: dt.datetime, schedule=None, fleet=FLEET, in_flight=(), signals=None, deadlines=None):
    decision = decide(now, [schedule or pool_schedule()], fleet, list(in_flight), signals or {}, deadlines or {})
    return decision


def test_the_window_opens_at_local_time_on_both_sides_of_the_dst_change():
    schedule = pool_schedule()
    # Friday 2026-03-06 is CST (UTC-6): 09:00 local is 15:00 UTC; Monday 2026-03-09 is CDT (UTC-5): 14:00 UTC
    assert plan.level(schedule, utc("2026-03-06T14:59")) == 1
    assert plan.level(schedule, utc("2026-03-06T15:00")) == 5
    assert plan.level(schedule, utc("2026-03-09T13:59")) == 1
    assert plan.level(schedule, utc("2026-03-09T14:00")) == 5
    assert plan.level(schedule, utc("2026-03-09T19:59")) == 5
    assert plan.level(schedule, utc("2026-03-09T20:00")) == 1
    # the weekend in between is outside every window
    assert plan.level(schedule, utc("2026-03-07T16:00")) == 1
    # fall back (2026-11-01): Monday 2026-11-02 is CST again
    assert plan.level(schedule, utc("2026-10-30T14:00")) == 5
    assert plan.level(schedule, utc("2026-11-02T14:00")) == 1
    assert plan.level(schedule, utc("2026-11-02T15:00")) == 5


def test_moves_start_one_lead_time_plus_the_drain_before_the_window():
    # lead 15 + drain 5: the move must start 20 minutes before 14:00 UTC (CDT)
    early = moves_at(utc("2026-03-09T13:39"))
    assert early.moves == ()
    assert early.targets[0].inference == 1
    due = moves_at(utc("2026-03-09T13:40"))
    assert due.moves == (Move(pool="p", source=Side.TRAINING, dest=Side.INFERENCE, nodes=4),)
    assert (due.targets[0].inference, due.targets[0].training) == (5, 11)


def test_nodes_in_flight_are_not_ordered_twice():
    flying = [Move(pool="p", source=Side.TRAINING, dest=Side.INFERENCE, nodes=4)]
    fleet = {"p": PoolFleet(pool="p", count=16, inference=1, training=11)}
    assert moves_at(utc("2026-03-09T13:45"), fleet=fleet, in_flight=flying).moves == ()


def test_the_window_closing_sends_nodes_back_to_training():
    fleet = {"p": PoolFleet(pool="p", count=16, inference=5, training=11)}
    decision = moves_at(utc("2026-03-09T20:00"), fleet=fleet)
    assert decision.moves == (Move(pool="p", source=Side.INFERENCE, dest=Side.TRAINING, nodes=4),)


def test_a_short_window_inside_the_lead_time_is_still_prepared_for():
    schedule = pool_schedule(window("09:00", "09:10", nodes=3), lead=30, drain=0)
    # 13:40 UTC: the 10-minute window opens at 14:00 and closes before now + 30 minutes
    assert moves_at(utc("2026-03-09T13:40"), schedule=schedule).targets[0].inference == 3
    assert moves_at(utc("2026-03-09T13:29"), schedule=schedule).targets[0].inference == 1


def test_the_training_floor_caps_inference_and_is_reported():
    schedule = pool_schedule(window(nodes=14), floor=4)
    decision = moves_at(utc("2026-03-09T15:00"), schedule=schedule)
    assert decision.targets[0].inference == 12 and decision.targets[0].training == 4
    assert any("training keeps 4" in f for f in decision.findings)


def kv(*values: float) -> dict[str, PoolSignals]:
    return {"p": PoolSignals(kv_cache=values)}


def test_reactive_steps_up_on_a_sustained_signal_and_holds_inside_the_band():
    schedule = pool_schedule(reactive=kv_rule())
    night = utc("2026-03-10T04:00")
    fleet = {"p": PoolFleet(pool="p", count=16, inference=2, training=14)}
    history = (0.6,) * 10
    assert moves_at(night, schedule, fleet, signals=kv(*history, 0.95)).targets[0].inference == 2  # one minute: no
    up = moves_at(night, schedule, fleet, signals=kv(*history, 0.95, 0.95))
    assert up.targets[0].inference == 3 and up.targets[0].reason == "reactive up"
    assert moves_at(night, schedule, fleet, signals=kv(*(0.7,) * 12)).targets[0].inference == 2  # hold
    # no history (a new pool, a metrics outage): the windows alone
    assert moves_at(night, schedule, fleet, signals=kv()).targets[0].inference == 1


def test_reactive_steps_down_only_when_one_node_fewer_stays_below_the_up_threshold():
    schedule = pool_schedule(reactive=kv_rule())
    night = utc("2026-03-10T04:00")
    fleet = {"p": PoolFleet(pool="p", count=16, inference=2, training=14)}
    # 0.48 on 2 nodes would be 0.96 on 1: over the threshold, so hold
    assert moves_at(night, schedule, fleet, signals=kv(*(0.48,) * 10)).targets[0].inference == 2
    down = moves_at(night, schedule, fleet, signals=kv(*(0.3,) * 10))
    assert down.targets[0].inference == 1
    assert down.moves == (Move(pool="p", source=Side.INFERENCE, dest=Side.TRAINING, nodes=1),)


def test_reactive_never_goes_past_its_bound():
    schedule = pool_schedule(reactive=kv_rule(max_nodes=6))
    fleet = {"p": PoolFleet(pool="p", count=16, inference=6, training=10)}
    assert moves_at(utc("2026-03-09T16:00"), schedule, fleet, signals=kv(1.0, 1.0, 1.0)).targets[0].inference == 6


BLOCK = Deadline(start=utc("2026-03-01T11:30"), end=utc("2026-03-10T11:30"))


def test_training_on_a_capacity_block_drains_before_ec2_terminates():
    fleet = {"p": PoolFleet(pool="p", count=16, inference=1, training=15)}
    deadlines = {"p": BLOCK}
    # termination from 11:00 UTC; drain 5 minutes + one pass of margin: from 10:54
    assert moves_at(utc("2026-03-10T10:53"), fleet=fleet, deadlines=deadlines).moves == ()
    drain = moves_at(utc("2026-03-10T10:54"), fleet=fleet, deadlines=deadlines)
    assert drain.targets[0].training == 0
    assert Move(pool="p", source=Side.TRAINING, dest=Side.RELEASED, nodes=15) in drain.moves
    gone = moves_at(utc("2026-03-10T11:00"), fleet=fleet, deadlines=deadlines)
    assert (gone.targets[0].inference, gone.targets[0].training) == (0, 0)


def test_inference_is_never_placed_on_a_block_that_ends_inside_the_window():
    # 18:00-22:00 Tokyo is 09:00-13:00 UTC: the block terminates at 11:00 UTC, inside it
    schedule = pool_schedule(window("18:00", "22:00", nodes=5, tz="Asia/Tokyo"))
    decision = moves_at(utc("2026-03-10T08:45"), schedule=schedule, deadlines={"p": BLOCK})
    assert (decision.targets[0].inference, decision.targets[0].training) == (1, 15)  # the outside node stays
    assert not any(m.dest is Side.INFERENCE for m in decision.moves)
    assert any("cannot be served" in f and "2026-03-10 09:00" in f for f in decision.findings)
    # the same window a day earlier is served
    earlier = moves_at(utc("2026-03-09T08:45"), schedule=schedule, deadlines={"p": BLOCK})
    assert earlier.targets[0].inference == 5 and not earlier.findings

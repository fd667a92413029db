"""Lending idle inference slots to training through an interruptible reservation, in the one
decision and in the simulator: lent outside the window, reclaimed one drain + EC2's two-minute
warning + the lead time before it opens, training's own nodes taken only past what was lent."""

from __future__ import annotations

import dataclasses
import datetime as dt

from gpufleet.automation.schedule import plan
from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.lend import RECLAIM_WARNING, reclaim_ahead
from gpufleet.automation.schedule.model import Move, PoolFleet, Side
from gpufleet.automation.schedule.policies import Policy, schedule_for
from gpufleet.automation.schedule.simulate import Setup, choose_by_policy, simulate
from gpufleet.automation.schedule.trace import TraceKind, synthesize
from gpufleet.infra.model import LendRule
from tests.automation.schedule.builders import kv_rule, pool_schedule, utc, window

# weekdays 09:00-15:00 Chicago, 5 nodes in the window, 1 outside, floor 2, lead 15 + drain 5
LENDING = dataclasses.replace(pool_schedule(), lend=LendRule(max_nodes=8))
OPENS = utc("2026-03-09T14:00")  # Monday, CDT
CLOSES = utc("2026-03-09T20:00")


def decided(now: dt.datetime, fleet: PoolFleet, schedule=LENDING, in_flight=()):
    return decide(now, [schedule], {"p": fleet}, list(in_flight), {}, {})


def move(source: Side, dest: Side, nodes: int) -> Move:
    return Move(pool="p", source=source, dest=dest, nodes=nodes)


def test_the_window_closing_lends_the_idle_inference_slots():
    decision = decided(CLOSES, PoolFleet(pool="p", count=16, inference=5, training=11))
    assert decision.moves == (move(Side.INFERENCE, Side.LENT, 4),)
    (target,) = decision.targets
    assert (target.inference, target.training, target.lent) == (1, 15, 4)


def test_free_slots_are_lent_before_training_s_own_group_grows():
    decision = decided(CLOSES, PoolFleet(pool="p", count=16, inference=1, training=11))
    assert decision.moves == (move(Side.RELEASED, Side.LENT, 4),)


def test_what_cannot_be_lent_goes_to_training_s_own_group():
    schedule = dataclasses.replace(LENDING, lend=LendRule(max_nodes=2))
    decision = decided(CLOSES, PoolFleet(pool="p", count=16, inference=5, training=11), schedule)
    assert decision.moves == (move(Side.INFERENCE, Side.LENT, 2), move(Side.INFERENCE, Side.TRAINING, 2))
    assert decision.targets[0].lent == 2


def test_the_reclaim_starts_a_drain_the_warning_and_the_lead_time_before_the_window():
    assert reclaim_ahead(LENDING) == plan.lead(LENDING) + RECLAIM_WARNING == dt.timedelta(minutes=22)
    lending = PoolFleet(pool="p", count=16, inference=1, training=11, lent=4)
    assert decided(OPENS - dt.timedelta(minutes=23), lending).moves == ()
    reclaim = decided(OPENS - dt.timedelta(minutes=22), lending)
    assert reclaim.moves == (move(Side.LENT, Side.INFERENCE, 4),)
    assert reclaim.targets[0].lent == 0 and reclaim.targets[0].reason.startswith("lend: reclaimed 4")
    # two minutes later (when a move without lending would start) nothing is ordered twice
    flying = PoolFleet(pool="p", count=16, inference=1, training=11, lent=0)
    later = decided(OPENS - dt.timedelta(minutes=20), flying, in_flight=[move(Side.LENT, Side.INFERENCE, 4)])
    assert later.moves == () and later.targets[0].inference == 5


def test_training_s_own_nodes_move_only_past_what_was_lent():
    schedule = dataclasses.replace(LENDING, windows=(window(nodes=8),))
    lending = PoolFleet(pool="p", count=16, inference=1, training=11, lent=4)
    assert decided(OPENS - dt.timedelta(minutes=22), lending, schedule).moves == (move(Side.LENT, Side.INFERENCE, 4),)
    reclaimed = PoolFleet(pool="p", count=16, inference=5, training=11, lent=0)
    assert decided(OPENS - dt.timedelta(minutes=20), reclaimed, schedule).moves == (
        move(Side.TRAINING, Side.INFERENCE, 3),)


def test_training_keeps_its_floor_in_its_own_group():
    # however much may be lent, the floor is training's own (never reclaimed by EC2)
    schedule = dataclasses.replace(LENDING, lend=LendRule(max_nodes=14))
    decision = decided(CLOSES, PoolFleet(pool="p", count=16, inference=14, training=0), schedule)
    assert decision.moves == (move(Side.INFERENCE, Side.LENT, 13), move(Side.RELEASED, Side.TRAINING, 2))
    (target,) = decision.targets
    assert (target.lent, target.training - target.lent) == (13, 2)


def test_the_other_policies_do_not_lend_and_the_lend_policy_does():
    assert schedule_for(Policy.SCHEDULE_REACTIVE, LENDING, 16).lend is None
    assert schedule_for(Policy.LEND, LENDING, 16).lend == LendRule(max_nodes=8)
    assert schedule_for(Policy.LEND, pool_schedule(), 16).lend == LendRule(max_nodes=14)


def test_the_simulated_reclaims_start_early_enough_and_lent_nodes_train():
    trace = synthesize(TraceKind.STEADY, days=7, seed=1, start=utc("2026-03-09T00:00"))
    setup = Setup(schedule=pool_schedule(reactive=kv_rule()), count=16, initial_inference=5, seed=1)
    choose = choose_by_policy(Policy.LEND, setup, trace)
    reclaims: list[dt.datetime] = []
    lent_minutes = 0

    def recording(minute, now, pool, flying, signals):
        nonlocal lent_minutes
        lent_minutes += pool.lent
        decision = choose(minute, now, pool, flying, signals)
        reclaims.extend(now for m in decision.moves if m.source is Side.LENT and m.dest is Side.INFERENCE)
        return decision

    lend = simulate(trace, setup, Policy.LEND, recording)
    without = simulate(trace, setup, Policy.SCHEDULE_REACTIVE)
    assert lent_minutes > 5 * 17 * 60 * 3  # weekday nights and the weekend trained in lent slots
    window_reclaims = [t for t in reclaims if plan.level(setup.schedule, t + reclaim_ahead(setup.schedule)) == 5
                       and plan.level(setup.schedule, t) == 1]
    assert len({t.date() for t in window_reclaims}) == 5  # one reclaim ahead of each weekday's window
    for t in window_reclaims:
        # started no later than drain + warning + lead before the window (the window is open then)
        assert plan.level(setup.schedule, t + reclaim_ahead(setup.schedule)) == 5
        assert plan.level(setup.schedule, t + reclaim_ahead(setup.schedule) - dt.timedelta(minutes=1)) == 1
    assert lend.served_fraction >= 0.999
    # the reclaim's two minutes cost training a little: honest, not a gain
    assert lend.training_gpu_hours <= without.training_gpu_hours

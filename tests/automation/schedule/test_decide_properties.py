"""Invariants of the decision over random fleets, moves in flight, signals and instants."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.model import Deadline, Move, PoolFleet, PoolSignals, Side
from tests.automation.schedule.builders import kv_rule, pool_schedule, utc, window

SCHEDULE = pool_schedule(window(nodes=6), window("12:00", "12:30", nodes=9), reactive=kv_rule(max_nodes=12))
BLOCK = Deadline(start=utc("2026-03-02T11:30"), end=utc("2026-03-12T11:30"))


@st.composite
def situations(draw):
    count = draw(st.integers(min_value=2, max_value=16))
    inference = draw(st.integers(min_value=0, max_value=count))
    training = draw(st.integers(min_value=0, max_value=count - inference))
    left = count - inference - training
    flying = []
    for side in (Side.INFERENCE, Side.TRAINING, Side.RELEASED):
        n = draw(st.integers(min_value=0, max_value=left))
        left -= n
        if n:
            flying.append(Move(pool="p", source=Side.RELEASED, dest=side, nodes=n))
    minutes = draw(st.integers(min_value=0, max_value=14 * 1440))
    samples = draw(st.lists(st.floats(min_value=0, max_value=1), max_size=15))
    deadlines = {"p": BLOCK} if draw(st.booleans()) else {}
    return PoolFleet(pool="p", count=count, inference=inference, training=training), flying, minutes, samples, deadlines


@settings(max_examples=300, deadline=None)
@given(situations())
def test_targets_fit_the_pool_and_moves_take_only_nodes_that_are_there(situation):
    pool, flying, minutes, samples, deadlines = situation
    now = utc("2026-03-02T00:00") + dt.timedelta(minutes=minutes)
    decision = decide(now, [SCHEDULE], {"p": pool}, flying, {"p": PoolSignals(kv_cache=samples)}, deadlines)
    (target,) = decision.targets
    assert target.inference >= 0 and target.training >= 0
    assert target.inference + target.training <= pool.count
    assert target.inference <= max(0, pool.count - SCHEDULE.training_floor) and target.inference <= 12
    taken = {side: sum(m.nodes for m in decision.moves if m.source is side) for side in Side}
    assert taken[Side.INFERENCE] <= pool.inference and taken[Side.TRAINING] <= pool.training
    free = pool.count - pool.inference - pool.training - sum(m.nodes for m in flying)
    assert taken[Side.RELEASED] <= free
    assert all(m.nodes > 0 and m.source is not m.dest for m in decision.moves)
    if deadlines and now >= BLOCK.termination - dt.timedelta(minutes=SCHEDULE.drain_minutes + 1):
        assert target.training == 0  # a Capacity Block's training drains before EC2 terminates
    # the same inputs, the same decision: nothing read from a clock or the world
    assert decide(now, [SCHEDULE], {"p": pool}, flying, {"p": PoolSignals(kv_cache=samples)}, deadlines) == decision

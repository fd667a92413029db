"""The journal against DynamoDB on a real moto server: compare-and-set, events, lease lock."""

from __future__ import annotations

import time

import pytest

from gpufleet.automation.rebalance.journal import Journal, LeaseKeeper
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import ConflictError

pytestmark = pytest.mark.emulator


def test_transitions_are_compare_and_set_and_journal_events(journal_ddb):
    ddb, table = journal_ddb
    mine = Journal(ddb, table, owner="a")
    op = mine.create("rb-1", {"plan": {"nodes": 2}})
    op = mine.transition(op, MoveState.LOCKED)
    stale = op
    op = mine.record(op, "result", "checkpoint", {"ok": True}, body={**op.body, "progress": {"x": 1}})
    with pytest.raises(ConflictError, match="changed under us"):
        Journal(ddb, table, owner="b").transition(stale, MoveState.CHECKPOINTING)
    op = mine.transition(op, MoveState.CHECKPOINTING)
    again = mine.load("rb-1")
    assert (again.state, again.version, again.body["progress"]) == (MoveState.CHECKPOINTING, 4, {"x": 1})
    kinds = [(e.event_type, e.state) for e in mine.events("rb-1")]
    assert kinds == [("transition", "PLANNED"), ("transition", "LOCKED"), ("result", "LOCKED"),
                     ("transition", "CHECKPOINTING")]
    with pytest.raises(ConflictError, match="already exists"):
        mine.create("rb-1", {})


def test_illegal_transition_writes_nothing(journal_ddb):
    ddb, table = journal_ddb
    j = Journal(ddb, table)
    op = j.create("rb-2", {})
    with pytest.raises(ConflictError, match="illegal"):
        j.transition(op, MoveState.RELEASED)
    assert j.load("rb-2").state == MoveState.PLANNED


def test_lease_lock_refuses_a_second_holder_until_it_expires(journal_ddb):
    ddb, table = journal_ddb
    now = [1000.0]
    first = Journal(ddb, table, owner="host-a:1", clock=lambda: now[0])
    second = Journal(ddb, table, owner="host-b:2", clock=lambda: now[0])
    first.acquire("rb-a", lease_s=60)
    first.acquire("rb-a", lease_s=60)  # re-entrant for the same operation (resume)
    with pytest.raises(ConflictError) as refused:
        second.acquire("rb-b", lease_s=60)
    assert "rb-a" in refused.value.message and "host-a:1" in refused.value.message
    now[0] += 50
    first.renew("rb-a", lease_s=60)
    now[0] += 50
    with pytest.raises(ConflictError):
        second.acquire("rb-b", lease_s=60)  # the heartbeat kept it alive
    now[0] += 20
    second.acquire("rb-b", lease_s=60)  # expired: taken over
    with pytest.raises(ConflictError, match="lost its lock"):
        first.renew("rb-a")
    first.release("rb-a")  # not ours any more: a no-op
    assert second.holder().op_id == "rb-b"
    second.release("rb-b")
    assert second.holder() is None


def test_list_ops_in_flight(journal_ddb):
    ddb, table = journal_ddb
    j = Journal(ddb, table)
    done = j.create("rb-x", {})
    j.transition(j.transition(done, MoveState.ROLLING_BACK), MoveState.ROLLED_BACK)
    j.create("rb-y", {})
    assert [o.op_id for o in j.list_ops(in_flight_only=True)] == ["rb-y"]
    assert [o.op_id for o in j.list_ops()] == ["rb-x", "rb-y"]


def test_lease_keeper_heartbeat_keeps_the_lock_and_notices_losing_it(journal_ddb):
    ddb, table = journal_ddb
    mine, other = Journal(ddb, table, owner="a"), Journal(ddb, table, owner="b")
    mine.acquire("rb-k", lease_s=0.6)
    with LeaseKeeper(mine, "rb-k", lease_s=0.6) as keeper:
        time.sleep(1.5)  # two and a half leases: only the heartbeat keeps it
        with pytest.raises(ConflictError):
            other.acquire("rb-o", lease_s=0.6)
        keeper.check()
    time.sleep(0.8)  # no heartbeat any more: the lease runs out
    other.acquire("rb-o", lease_s=60)
    with LeaseKeeper(mine, "rb-k", lease_s=0.3) as keeper:
        time.sleep(0.5)
        with pytest.raises(ConflictError, match="lost its lock"):
            keeper.check()

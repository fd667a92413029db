"""The journal against DynamoDB on a real moto server: compare-and-set, events (leases: test_lease.py)."""

from __future__ import annotations

import pytest

from gpufleet.automation.rebalance.journal import Journal
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


def test_list_ops_in_flight(journal_ddb):
    ddb, table = journal_ddb
    j = Journal(ddb, table)
    done = j.create("rb-x", {})
    j.transition(j.transition(done, MoveState.ROLLING_BACK), MoveState.ROLLED_BACK)
    j.create("rb-y", {})
    assert [o.op_id for o in j.list_ops(in_flight_only=True)] == ["rb-y"]
    assert [o.op_id for o in j.list_ops()] == ["rb-x", "rb-y"]

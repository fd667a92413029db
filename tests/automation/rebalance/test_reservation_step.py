"""Moves to and from the reservation (``released``) in step mode, against the sandbox: a give-back
checkpoints and drains over several passes, terminates exactly its victims and acquires nothing; a
take-free drains nothing and joins over several passes; either rolls back when its AWS side fails."""

from __future__ import annotations

import pytest

from gpufleet.automation.rebalance import history
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from tests.automation.rebalance.test_rebalance_step import SERVE, TRAIN, passes_until_done, stepper

pytestmark = pytest.mark.emulator

POOL = "h100-use1-az4"


@pytest.fixture
def cluster():
    from tests.automation.rebalance.test_rebalance_step import SlowCluster

    return SlowCluster()


def used(fleet) -> int:
    [r] = [r for r in fleet.control.reservations() if r["name"] == POOL]
    return r["used"]


def test_a_give_back_drains_over_passes_and_acquires_nothing(fleet, cluster):
    ex = stepper(fleet, "pass-start", cluster)
    plan = ex.plan(MoveRequest(from_role="training", to_role="released", nodes=2, pool=POOL))
    assert (plan.dest_stack, plan.dest_asg, plan.free_before, plan.free_after) == ("", "", 1, 3)
    assert len(plan.victims) == 2 and plan.after == {"inference": 2, "training": 3}
    op = ex.step(ex.start(plan, op_id="rb-back"))
    assert op.state is MoveState.CHECKPOINTING, "the victims cannot drain within the first look"
    assert set(cluster.asked) == {v.instance_id for v in plan.victims}
    op, passes = passes_until_done(fleet, "rb-back", cluster)
    assert op.state is MoveState.DONE and passes > 1
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 2
    assert used(fleet) == 5, "the two slots went back to the reservation"
    fleet.check_invariant()
    events = ex.journal.events("rb-back")
    terminated = [e.detail["instance"] for e in events
                  if e.event_type == "intent" and e.detail.get("call") == "TerminateInstanceInAutoScalingGroup"]
    assert sorted(terminated) == sorted(v.instance_id for v in plan.victims)
    assert not [e for e in events if e.detail.get("call") in {"SetDesiredCapacity", "health_gate"}]
    assert [e.state for e in events if e.event_type == "transition"][-4:] == ["ACQUIRED", "HEALTHY", "JOINED", "DONE"]
    assert not ex.leases.held()
    detail = history.show_move(ex.journal, "rb-back")
    assert str(detail.source).startswith("training/") and str(detail.dest) == f"pool {POOL}'s reservation"
    assert (detail.dest.stack, detail.dest.name, detail.dest.pool) == ("", "", POOL)
    assert (detail.move.from_role, detail.move.to_role, detail.acquired) == ("training", "released", [])


def test_a_take_free_joins_over_passes_and_drains_nothing(fleet, cluster):
    ex = stepper(fleet, "pass-start", cluster)
    plan = ex.plan(MoveRequest(from_role="released", to_role="inference", nodes=1, pool=POOL))
    assert (plan.source_stack, plan.victims, plan.free_after) == ("", [], 0)
    op = ex.step(ex.start(plan, op_id="rb-free"))
    assert op.state is MoveState.HEALTHY, "nothing to drain; the new node is not ready at the first look"
    op, _ = passes_until_done(fleet, "rb-free", cluster)
    assert op.state is MoveState.DONE
    assert not cluster.asked, "no node was asked to checkpoint"
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 3 and used(fleet) == 8
    fleet.check_invariant()


def test_a_take_free_beyond_the_free_slots_is_refused_before_any_call(fleet, cluster):
    from gpufleet.infra.errors import BadInputError

    ex = stepper(fleet, "pass-start", cluster)
    with pytest.raises(BadInputError, match="only 1 free"):
        ex.plan(MoveRequest(from_role="released", to_role="training", nodes=2, pool=POOL))
    with pytest.raises(BadInputError, match="no consumer stack has that role"):
        ex.plan(MoveRequest(from_role="released", to_role="gaming", nodes=1, pool=POOL))


def test_a_give_back_whose_termination_fails_rolls_back_and_undrains(fleet, cluster):
    ex = stepper(fleet, "pass-start", cluster)
    plan = ex.plan(MoveRequest(from_role="training", to_role="released", nodes=1, pool=POOL))
    fleet.control.inject_fault("autoscaling", "TerminateInstanceInAutoScalingGroup", "InternalError", count=50)
    op = ex.step(ex.start(plan, op_id="rb-fail"))
    if op.state not in TERMINAL:
        op, _ = passes_until_done(fleet, "rb-fail", cluster)
    assert op.state is MoveState.ROLLED_BACK
    fleet.control.clear_faults()
    assert fleet.desired()[TRAIN] == 5 and used(fleet) == 7
    calls = [e.detail.get("call") for e in ex.journal.events("rb-fail") if e.event_type == "intent"]
    assert "undrain" in calls
    fleet.check_invariant()

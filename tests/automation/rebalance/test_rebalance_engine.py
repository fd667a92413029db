"""The executor in-process against the sandbox: a move, the move back, rollback on capacity."""

from __future__ import annotations

import pytest

from gpufleet.automation.health.gate import AcceptAllGate, GateVerdict
from gpufleet.automation.orchestrators.base import NoOrchestrator
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import ConflictError, OperationFailed

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
"""Node groups (fleet.desired() is keyed by node group)."""


class RejectGate:
    def check(self, stack, instance_ids):
        return GateVerdict(passed=[], failed={i: "xid 79" for i in instance_ids})


def executor(fleet, gate=None, owner="test"):
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table, owner=owner)
    return Executor(fleet.inventory, fleet.client, journal, lambda kind, stack: NoOrchestrator(),
                    gate or AcceptAllGate(), limits=Limits(poll_s=0.05, acquire_timeout_s=20))


def test_move_and_move_back(fleet):
    ex = executor(fleet)
    plan = ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))
    victims = {v.instance_id for v in plan.victims}
    op = ex.run(ex.start(plan))
    assert op.state is MoveState.DONE
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
    assert victims.isdisjoint(fleet.running()["training"] | fleet.running()["inference"])
    fleet.check_invariant()
    events = [(e.event_type, e.step) for e in ex.journal.events(op.op_id)]
    assert events.count(("intent", "release")) == 2 and events.count(("result", "release")) == 2
    assert not ex.leases.held()

    back = ex.run(ex.start(ex.plan(MoveRequest(from_role="inference", to_role="training", nodes=2))))
    assert back.state is MoveState.DONE and fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()


def test_failed_health_gate_rolls_back_and_the_lock_refuses_a_second_move(fleet):
    ex = executor(fleet, gate=RejectGate())
    with pytest.raises(OperationFailed, match="health gate failed: .*xid 79"):
        ex.run(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)), op_id="rb-sick"))
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()

    holder = executor(fleet, owner="host-a:1:1")
    pool = holder.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)).pool
    holder.leases.acquire(pool, "rb-first")
    other = executor(fleet, owner="host-b:2:2")
    with pytest.raises(ConflictError, match="rb-first.*host-a:1"):
        other.run(other.start(other.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)), op_id="rb-second"))
    assert other.journal.load("rb-second").state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 5


def test_a_victim_replaced_on_its_own_is_not_made_up_for_by_an_arbitrary_node(fleet):
    """Before the lease is taken: the plan went stale and is refused with nothing done. (After it,
    ``_release`` refuses to let the group pick a node: ``left the group on its own``.)"""
    ex = executor(fleet)
    plan = ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))
    gone = plan.victims[0].instance_id
    # the victim dies and its group replaces it, desired size unchanged (as after a failed health check)
    fleet.client("training", "autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=gone, ShouldDecrementDesiredCapacity=False)
    bystanders = set(fleet.live(fleet.inventory.groups_of("training", plan.pool)[0])) - {v.instance_id for v in plan.victims}
    with pytest.raises(ConflictError, match="went stale: victim"):
        ex.run(ex.start(plan, op_id="rb-gone"))
    assert ex.journal.load("rb-gone").state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    assert bystanders <= set(fleet.live(fleet.inventory.groups_of("training", plan.pool)[0]))  # no one else was killed
    fleet.check_invariant()

"""A Capacity Block's give-back pre-empts the move in flight in its pool, against the sandbox.

At the last pass that still drains in time (10:54 for a block whose instances EC2 terminates from
11:00), a move started earlier (an operator's training -> inference, its victims still
checkpointing) holds the pool's lease. Waiting for it would miss the termination, so the give-back
is journaled naming it, cancels it under its own lease (its journal says cancelled, why and by
which operation; nothing of it was terminated) and drains every training node, the cancelled
move's included. A move past its release is not cancelled: it finishes and the give-back follows.
A pass killed at any journal call is continued by the next; two passes at once never both act."""

from __future__ import annotations

import datetime as dt
import socket
import threading

import pytest

from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.plan import load_specs
from gpufleet.automation.rebalance import history
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from gpufleet.automation.schedule import runner
from gpufleet.automation.schedule.reconcile import reconcile_pass
from tests.automation.rebalance.capacity_block import POOL
from tests.automation.rebalance.test_rebalance_step import (
    DEAD,
    DyingClient,
    Killed,
    SlowCluster,
    stepper,
)
from tests.automation.rebalance.test_schedule_deadline import DRAIN_AT

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
AT = dt.datetime.fromisoformat(DRAIN_AT)


def in_flight_move(fleet, cluster, op_id="rb-operator"):
    """An operator's training -> inference move of 1 node, stepped once: its victim checkpoints."""
    ex = stepper(fleet, "operator-pass", cluster)
    op = ex.step(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1, pool=POOL)),
                          op_id=op_id))
    assert op.state is MoveState.CHECKPOINTING, "the victim cannot leave within the first look"
    return op


def one_pass(fleet, sandbox, block_path, cluster, owner, at, ddb=None):
    """One scheduler pass as ``owner`` (its own process), on the same slow cluster as every other."""
    inventory = load_inventory(block_path)
    schedules = runner.platform_schedules(load_specs(sandbox.stacks_dir))
    groups = [g for g in inventory.node_groups if g.group.pool == POOL]

    def desired():
        return {g.group.asg_name: fleet.client(g.stack, "autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[g.group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"] for g in groups}

    return reconcile_pass(inventory, schedules, lambda: stepper(fleet, owner, cluster, ddb=ddb), desired, now=at)


def passes_until_drained(fleet, sandbox, block_path, cluster, first=0, most=12):
    for n in range(first, first + most):
        one_pass(fleet, sandbox, block_path, cluster, f"host-b:{n}:1", AT + dt.timedelta(seconds=n))
        if not journal(fleet).list_ops(in_flight_only=True) and fleet.desired()[TRAIN] == 0:
            return n - first + 1
    raise AssertionError(f"not drained after {most} passes: {[(o.op_id, o.state) for o in journal(fleet).list_ops()]}")


def journal(fleet):
    return Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)


def give_backs(fleet):
    """The give-backs of training (not the surplus inference node's that follows them)."""
    return [op for op in journal(fleet).list_ops()
            if (op.body["plan"]["from_role"], op.body["plan"]["to_role"]) == ("training", "released")]


def assert_preempted(fleet, victim_id):
    """The cancelled move says so and names an operation that exists and gave the training back."""
    j = journal(fleet)
    victim = j.load(victim_id)
    assert victim.state is MoveState.ROLLED_BACK
    by = victim.body["progress"]["cancelled_by"]
    back = j.load(by)
    assert back is not None and back.state is MoveState.DONE and back.body["preempts"] == victim_id
    assert back.body["plan"]["nodes"] == 5, "every training node, the cancelled move's victim included"
    reason = victim.body["progress"]["rollback_reason"]
    assert reason.startswith(f"cancelled: pre-empted by {by}: waiting would start the give-back after 10:55 UTC")
    events = j.events(victim_id)
    assert not [e for e in events if e.detail.get("call") == "TerminateInstanceInAutoScalingGroup"], \
        "nothing of the cancelled move was terminated"
    [cancel] = [e for e in events if e.event_type == "transition" and e.state == "ROLLING_BACK"]
    assert cancel.detail["cancelled_by"] == by
    # the outside level then gives the surplus inference node back too (as at any deadline)
    assert fleet.desired()[TRAIN] == 0 and fleet.desired()[SERVE] == 1
    fleet.check_invariant()
    assert not [op for op in j.list_ops(in_flight_only=True)]
    return back


def test_the_give_back_cancels_a_move_that_has_terminated_nothing(fleet, sandbox, block):
    cluster = SlowCluster()
    victim = in_flight_move(fleet, cluster)
    result = one_pass(fleet, sandbox, block, cluster, "host-b:0:1", AT)
    assert [(m.op_id, m.state) for m in result.advanced] == [(victim.op_id, "CHECKPOINTING")], "still checkpointing"
    [started] = result.started
    assert (started.from_role, started.to_role, started.nodes) == ("training", "released", 5)
    assert started.state == "CHECKPOINTING", "the give-back took over in the same pass"
    assert any(f.startswith(f"pool {POOL}: the give-back pre-empts {victim.op_id}: ") for f in result.findings)
    passes_until_drained(fleet, sandbox, block, cluster, first=1)
    back = assert_preempted(fleet, victim.op_id)
    calls = [e.detail.get("call") for e in journal(fleet).events(victim.op_id) if e.event_type == "intent"]
    assert calls == ["request_checkpoint", "undrain"], "the cancel gave the victim its work back"
    shown = history.show_move(journal(fleet), victim.op_id)
    assert shown.move.state == "ROLLED_BACK" and shown.rollback_reason.startswith(f"cancelled: pre-empted by {back.op_id}")
    listed = {m.op_id: m.state for m in history.list_moves(journal(fleet))}
    assert (listed[victim.op_id], listed[back.op_id]) == ("ROLLED_BACK", "DONE")


def test_a_give_back_that_can_still_wait_does_not_preempt(fleet, sandbox, block):
    cluster = SlowCluster()
    in_flight_move(fleet, cluster)
    result = one_pass(fleet, sandbox, block, cluster, "host-b:0:1", AT - dt.timedelta(minutes=10))
    assert not result.started and not give_backs(fleet)
    assert journal(fleet).load("rb-operator").state is MoveState.CHECKPOINTING


def test_a_move_past_its_release_finishes_and_the_give_back_follows(fleet, sandbox, block):
    cluster = SlowCluster(drain_looks=0, join_looks=4)
    ex = stepper(fleet, "operator-pass", cluster)
    op = ex.step(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1, pool=POOL)),
                          op_id="rb-past"))
    assert op.state is MoveState.HEALTHY, "released, launched and gated; waiting for the node to join"
    first = one_pass(fleet, sandbox, block, cluster, "host-b:0:1", AT)
    assert [(m.op_id, m.state) for m in first.advanced] == [("rb-past", "HEALTHY")]
    assert not first.started and not give_backs(fleet)
    assert any("training -> released wait for the move in flight" in f for f in first.findings), first.findings
    passes_until_drained(fleet, sandbox, block, cluster, first=1)
    assert journal(fleet).load("rb-past").state is MoveState.DONE, "never cancelled: it had terminated its victim"
    [back] = give_backs(fleet)
    assert back.state is MoveState.DONE and "preempts" not in back.body and back.body["plan"]["nodes"] == 4
    assert fleet.desired()[SERVE] == 3, "the move finished: its node joined inference"
    fleet.check_invariant()


KILL_AT = list(range(1, 41))
"""Each journal call of the pre-empting pass to die before (its first 40): from the listing of the moves in flight,
through the give-back's creation, the cancel's lease and transitions, to the give-back's own steps."""


@pytest.mark.parametrize("kill_at", KILL_AT)
def test_a_pass_killed_at_any_call_of_a_preemption_is_continued(fleet, sandbox, block, kill_at):
    cluster = SlowCluster()
    victim = in_flight_move(fleet, cluster)
    dying = DyingClient(fleet.client("platform", "dynamodb"), kill_at)
    with pytest.raises(Killed):
        for _ in range(3):
            one_pass(fleet, sandbox, block, cluster, DEAD.format(host=socket.gethostname()), AT, ddb=dying)
    passes_until_drained(fleet, sandbox, block, cluster, first=1)
    assert_preempted(fleet, victim.op_id)
    assert [op.state for op in give_backs(fleet)] == [MoveState.DONE], "one give-back: the killed pass's or the next's"


def test_two_passes_at_once_never_both_act(fleet, sandbox, block):
    cluster = SlowCluster()
    victim = in_flight_move(fleet, cluster)
    results, errors = {}, []

    def run(owner):
        try:
            results[owner] = one_pass(fleet, sandbox, block, cluster, owner, AT)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(f"host-{x}:1:1",)) for x in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2, errors
    passes_until_drained(fleet, sandbox, block, cluster, first=1)
    back = assert_preempted(fleet, victim.op_id)
    for other in [op for op in give_backs(fleet) if op.op_id != back.op_id]:  # refused, having done nothing
        assert other.state is MoveState.ROLLED_BACK
        assert not [e for e in journal(fleet).events(other.op_id) if e.event_type == "intent"]
    terminated = [e.detail["instance"] for op in give_backs(fleet) for e in journal(fleet).events(op.op_id)
                  if e.event_type == "intent" and e.detail.get("call") == "TerminateInstanceInAutoScalingGroup"]
    assert len(terminated) == len(set(terminated)) == 5
    assert all(op.state in TERMINAL for op in journal(fleet).list_ops())

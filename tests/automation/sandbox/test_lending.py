"""The platform account lends a pool's idle slots and reclaims them through the scheduler's lending
step (automation/schedule/lending.py), against the sandbox's interruptible reservations: training
runs in the lent slots; before the window the reclaim waits for training's checkpoint, then EC2
warns and terminates the drained nodes; the interruptible reservation is kept at zero, so the lent
group's launch template keeps its id."""

from __future__ import annotations

import time

import boto3
import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.schedule.lending import lend_step, read_allocation
from tests.automation.sandbox.test_capacity import NO_RETRY
from tests.automation.sandbox.test_interruptible import POOL, describe, launch_into, states

pytestmark = pytest.mark.emulator
WARNING_S = 1.0
"""EC2's 2-minute warning, shortened (the emulator's clock is the wall clock)."""


def share_with_training(sandbox, lent_id: str) -> None:
    platform = boto3.client("ec2", config=NO_RETRY)
    training = sandbox.outputs()["stacks"]["training"]["accountId"]
    arn = describe(platform, lent_id)["CapacityReservationArn"]
    boto3.client("ram").create_resource_share(name="lend-h100", resourceArns=[arn], principals=[training])


def test_lent_slots_train_and_are_reclaimed_only_after_the_checkpoint(sandbox):
    inventory = load_inventory(sandbox.inventory)
    source = inventory.pool(POOL).reservation_id
    # the window closed: inference left 3 of the ODCR's slots unused
    boto3.client("ec2", config=NO_RETRY).modify_capacity_reservation(CapacityReservationId=source, InstanceCount=10)
    ec2 = AwsAccess(inventory, operation="lend").client("platform", "ec2")
    made = lend_step(ec2, source, 3, training=0)
    assert (made.action, made.before, made.after) == ("created", 0, 3) and made.lent_id
    assert lend_step(ec2, source, 3, training=0).action == "held"  # idempotent: a second pass changes nothing
    share_with_training(sandbox, made.lent_id)
    ids = launch_into(sandbox, made.lent_id, 2)
    assert read_allocation(ec2, source).used == 2

    sandbox.client.set_interruption_warning(WARNING_S)
    try:
        # the reclaim is due; training is still writing its checkpoint: only the unused slot goes back
        partial = lend_step(ec2, source, 0, training=2)
        assert (partial.action, partial.after) == ("reclaimed", 2) and "checkpointing" in partial.note
        assert not sandbox.client.interruptions() and states(sandbox, ids) == {"running"}
        held = lend_step(ec2, source, 0, training=2)
        assert held.action == "waits" and "no reclaim before they drain" in held.note
        assert not sandbox.client.interruptions()
        checkpointed = time.time()  # training reports its checkpoint written and its nodes drained
        reclaim = lend_step(ec2, source, 0, training=0)
        assert (reclaim.action, reclaim.after) == ("reclaimed", 0)
        warnings = sandbox.client.interruptions()
        assert sorted(w["detail"]["instance-id"] for w in warnings) == sorted(ids)
        for w in warnings:  # EC2 terminates only after the checkpoint plus the warning
            assert w["detail"]["instance-termination-time"] >= checkpointed + WARNING_S
        assert lend_step(ec2, source, 0, training=0).action == "waits"  # the warning runs
        deadline = time.monotonic() + 30
        while read_allocation(ec2, source).status == "updating":
            assert time.monotonic() < deadline, "the reclaim never settled"
            time.sleep(0.2)
    finally:
        sandbox.client.set_interruption_warning(120)
    assert states(sandbox, ids) <= {"shutting-down", "terminated"}
    after = read_allocation(ec2, source)
    assert (after.lent_id, after.lent, after.status) == (made.lent_id, 0, "active")  # kept at zero, same id
    assert describe(boto3.client("ec2", config=NO_RETRY), made.lent_id)["State"] == "active"
    # the next night lends into the same interruptible reservation
    again = lend_step(ec2, source, 2, training=0)
    assert (again.action, again.after, again.lent_id) == ("grown", 2, made.lent_id)

"""Hot spares kept by a healer held to its own stack, under the sandbox's IAM enforcement, in a
pool whose groups are in the training and the inference stack: the healer may not read the other
stack's group, so it reads the pool's reservation as EC2 describes it to its own account (shared by
RAM) and launches a spare only into a free instance of it.

On Slurm, as the training head's instance role. On EKS, through the EKS healer's spare path held to
the sandbox's one EKS stack (standing in for a training stack, as test_heal_spares_eks.py does); its
AWS calls go through that account's operator role, as the Deployment's role makes them."""

from __future__ import annotations

import json
import re

import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.service import HealArgs, heal_ops, heal_pass
from gpufleet.automation.heal.spares import SPARE_REASON
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.rebalance.state import MoveState
from tests.automation.heal.test_heal_slurm import Fleet
from tests.automation.heal.test_heal_spares_eks import (
    as_training_pool_with_spares,
    is_held_spare,
    node_of,
)
from tests.automation.heal.test_heal_spares_slurm import with_spares
from tests.automation.heal.test_healer_head_identity import instance_session

pytestmark = pytest.mark.emulator

SPARE_IN_SERVICE = re.compile(r": (i-[0-9a-f]+) InService as a hot spare of ")


@pytest.fixture
def fleet(sandbox, local_slurm, tmp_path):
    return Fleet(sandbox, local_slurm, tmp_path)


def head_pass(sandbox, fleet: Fleet, progress=lambda _m: None):
    """One pass as the training head: its instance role's sessions, held to its own stack."""
    access = AwsAccess(load_inventory(sandbox.inventory), operation="heal", identity="instance",
                       base_session=instance_session(sandbox, "training"))
    args = HealArgs(inventory=sandbox.inventory, probe="local", stacks=(access.own_stack(),),
                    budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=2),
                    limits=Limits(drain_timeout_s=60, replace_timeout_s=60, reboot_timeout_s=5, poll_s=0.5,
                                  join_timeout_s=0))
    return heal_pass(args, clients=cached_clients(access), slurm=fleet.slurm, probes=lambda _stack: fleet.probe,
                     progress=progress)


def available(sandbox, reservation_id: str) -> int:
    return next(r for r in sandbox.reservations() if r["id"] == reservation_id)["available"]


def shared_pool(fleet: Fleet):
    pool = fleet.inventory.pool(fleet.ref.group.pool)
    stacks = {g.stack for g in fleet.inventory.node_groups if g.group.pool == pool.name}
    assert stacks == {"training", "inference"} and pool.reservation_id, (pool, stacks)
    return pool


@pytest.mark.slurm
def test_the_head_launches_a_spare_into_a_free_instance_of_the_shared_reservation(fleet, sandbox):
    pool = shared_pool(fleet)
    with_spares(sandbox, pool.name, 1)
    free = available(sandbox, pool.reservation_id)
    assert free >= 1, "the applied fleet leaves the pool's reservation a free instance"
    desired = fleet.group()["DesiredCapacity"]
    newcomers: list[str] = []

    def progress(message: str) -> None:
        found = SPARE_IN_SERVICE.search(message)
        if found and not newcomers:
            newcomers.append(found.group(1))
            fleet.harness.register_dynamic_node("dyn1", held=True)
            fleet.slurm.update_nodes(["dyn1"], Comment=found.group(1))

    sandbox.reset_log()
    report = head_pass(sandbox, fleet, progress)
    assert sandbox.client.iam()["denials"] == []
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "DONE" and op["replaced_by"] == newcomers, report
    assert fleet.group()["DesiredCapacity"] == desired + 1
    assert available(sandbox, pool.reservation_id) == free - 1
    dyn1 = next(n for n in fleet.slurm.nodes() if n.name == "dyn1")
    assert "DRAIN" in dyn1.state and dyn1.reason.startswith(SPARE_REASON), dyn1
    # What the launch was decided on is journaled with its intent: EC2's count, as this account reads it.
    (journaled,) = heal_ops(fleet.journal)
    (intent,) = [e for e in fleet.journal.events(journaled.op_id) if e.step == "launch_spare"]
    assert intent.detail == {"desired": desired + 1, "reservation": pool.reservation_id, "state": "active",
                             "available": free, "total": pool.count, "launching": 0}
    # Read in the training account, as its operator role: nothing of the inference account.
    inference = fleet.inventory.stacks["inference"].account_id
    calls = sandbox.requests()
    assert [r for r in calls if r["action"] == "DescribeCapacityReservations"]
    assert all(r["account"] == fleet.inventory.stacks["training"].account_id
               for r in calls if r["action"] == "DescribeCapacityReservations")
    assert not [r for r in calls if r["account"] == inference], "the training head read the inference account"


@pytest.mark.slurm
def test_the_head_launches_no_spare_into_a_full_reservation_and_says_why(fleet, sandbox):
    pool = shared_pool(fleet)
    with_spares(sandbox, pool.name, 1)
    other = next(g for g in fleet.inventory.node_groups if g.group.pool == pool.name and g.stack == "inference")
    fill(sandbox, fleet.clients, "inference", other.group.asg_name, pool.reservation_id)
    desired = fleet.group()["DesiredCapacity"]
    sandbox.reset_log()
    report = head_pass(sandbox, fleet)
    assert sandbox.client.iam()["denials"] == []
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "ROLLED_BACK"
    assert fleet.group()["DesiredCapacity"] == desired
    why = (f"pool {pool.name}: reservation {pool.reservation_id} has 0 free instances and 0 launches in "
           "flight in this healer's groups")
    assert f"no hot spare launched in pool {pool.name}: {why}" in report.notes, report.notes
    (journaled,) = heal_ops(fleet.journal)
    assert journaled.state is MoveState.ROLLED_BACK
    back = next(e for e in fleet.journal.events(journaled.op_id) if e.state == "ROLLING_BACK")
    assert back.detail["no_slot"] == why and back.detail["available"] == 0
    assert "launch_spare" not in [e.step for e in fleet.journal.events(journaled.op_id)]
    # A loop does not journal a launch every pass: the next one waits out the budget's window.
    again = head_pass(sandbox, fleet)
    assert not again.operations and len(heal_ops(fleet.journal)) == 1
    assert any(n.startswith(f"no hot spare launched in pool {pool.name}: {journaled.op_id} rolled back")
               for n in again.notes), again.notes


@pytest.mark.slurm
def test_the_head_launches_no_spare_into_an_on_demand_pool_it_shares(fleet, sandbox):
    pool = shared_pool(fleet)
    with_spares(sandbox, pool.name, 1)
    # The same pool as the inventory reads it on plain on-demand capacity: no reservation (camelCase keys).
    doc = json.loads(sandbox.inventory.read_text())
    for p in doc["stacks"][fleet.inventory.platform_stack]["pools"]:
        if p["name"] == pool.name:
            p.update(kind="on-demand", reservationId=None, reservationArn=None, shareArn=None)
    sandbox.inventory.write_text(json.dumps(doc))
    desired = fleet.group()["DesiredCapacity"]
    report = head_pass(sandbox, fleet)
    assert not report.operations and heal_ops(fleet.journal) == []
    assert fleet.group()["DesiredCapacity"] == desired
    assert f"no hot spare launched in pool {pool.name}: on-demand (no reservation to count free slots in) and " \
           "its groups in inference are not this healer's to read (spares are kept by the automation's heal " \
           "pass)" in report.notes, report.notes


def fill(sandbox, clients, stack: str, asg_name: str, reservation_id: str) -> None:
    """``stack``'s group takes the reservation's free instances (its own account's call)."""
    asg = clients(stack, "autoscaling")
    now = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
    asg.set_desired_capacity(AutoScalingGroupName=asg_name,
                             DesiredCapacity=now["DesiredCapacity"] + available(sandbox, reservation_id))
    assert available(sandbox, reservation_id) == 0


def test_the_eks_healer_held_to_its_stack_keeps_a_spare_by_the_reservations_count(eks, sandbox):
    as_training_pool_with_spares(sandbox, eks, 1)
    inventory = load_inventory(sandbox.inventory)
    pool = inventory.pool(eks.ref.group.pool)
    others = {g.stack for g in inventory.node_groups if g.group.pool == pool.name} - {eks.ref.stack}
    assert others and pool.reservation_id, "the pool has groups in another stack"
    free = available(sandbox, pool.reservation_id)
    desired = eks.group()["DesiredCapacity"]
    sandbox.reset_log()
    report = eks.heal(stacks=(eks.ref.stack,))
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "DONE", report.to_dict()
    (fresh,) = op["replaced_by"]
    assert eks.group()["DesiredCapacity"] == desired + 1 and is_held_spare(eks.kube, node_of(eks.kube, fresh))
    (journaled,) = heal_ops(eks.journal)
    (intent,) = [e for e in eks.journal.events(journaled.op_id) if e.step == "launch_spare"]
    assert (intent.detail["reservation"], intent.detail["available"], intent.detail["launching"]) == \
        (pool.reservation_id, free, 0)
    own = inventory.stacks[eks.ref.stack].account_id
    assert {r["account"] for r in sandbox.requests() if r["service"] in ("ec2", "autoscaling")} == {own}
    assert eks.kube.rejected == [] and sandbox.client.iam()["denials"] == []


def test_the_eks_healer_held_to_its_stack_launches_nothing_into_a_full_reservation(eks, sandbox):
    as_training_pool_with_spares(sandbox, eks, 1)
    inventory = load_inventory(sandbox.inventory)
    pool = inventory.pool(eks.ref.group.pool)
    other = next(g for g in inventory.node_groups if g.group.pool == pool.name and g.stack != eks.ref.stack)
    fill(sandbox, eks.clients, other.stack, other.group.asg_name, pool.reservation_id)
    desired = eks.group()["DesiredCapacity"]
    report = eks.heal(stacks=(eks.ref.stack,))
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "ROLLED_BACK"
    assert eks.group()["DesiredCapacity"] == desired
    assert any(n.startswith(f"no hot spare launched in pool {pool.name}: pool {pool.name}: reservation "
                            f"{pool.reservation_id} has 0 free instances") for n in report.notes), report.notes
    assert sandbox.client.iam()["denials"] == []

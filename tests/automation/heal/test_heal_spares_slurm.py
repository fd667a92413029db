"""The hot-spare swap on the real local Slurm with the sandbox's Auto Scaling group: a node held as
the spare is admitted as the faulty node drains, the requeued job starts on it, the faulty node is
replaced in its group (desired capacity kept), and the newcomer, registered held as the GPU nodes'
bootstrap registers it, is gated and held as the new spare."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest

from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.heal.spares import SPARE_REASON
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.automation.heal.test_heal_slurm import CHECKPOINTING_JOB, Fleet, decision

pytestmark = pytest.mark.slurm

NEWCOMER = re.compile(r": (i-[0-9a-f]+) InService in place of ")


@pytest.fixture
def fleet(sandbox, local_slurm, tmp_path):
    return Fleet(sandbox, local_slurm, tmp_path)


def test_a_fault_swaps_the_spare_in_and_the_newcomer_becomes_the_spare(fleet, sandbox):
    if len(fleet.ids) < 3:
        pytest.skip("needs three InService instances in the Slurm group")
    desired = fleet.group()["DesiredCapacity"]
    bad, spare_id = fleet.ids["node1"], fleet.ids["node2"]
    fleet.drain("node2", SPARE_REASON)
    fleet.drain("node3", "disk swap by ops")  # the job can only land on node1, then on the spare
    job = fleet.harness.sbatch(CHECKPOINTING_JOB, "-N", "1", "--requeue")
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=30, what="job running")
    assert fleet.harness.job(job).nodes == "node1"

    dry = fleet.heal(dry_run=True)
    assert decision(dry, "node2").action is HealAction.LEAVE and decision(dry, "node2").reason == "hot spare (held)"

    newcomers: list[str] = []

    def progress(message: str) -> None:
        found = NEWCOMER.search(message)
        if found and not newcomers:
            # The group's new instance boots and its bootstrap registers it held (hold-node.sh).
            newcomers.append(found.group(1))
            fleet.harness.register_dynamic_node("dyn1", held=True)
            fleet.slurm.update_nodes(["dyn1"], Comment=found.group(1))

    fault = time.time()
    fleet.drain("node1", "gpufleet: ecc: GPU 0000:b9:00: row remapping failed (no spare rows)")
    report = fleet.heal(progress=progress)
    d = decision(report, "node1")
    assert d.action is HealAction.REPLACE and d.swap_with == "node2" and d.swap_instance == spare_id
    (op,) = report.operations
    assert op["state"] == "DONE" and op["swapped_in"] == "node2" and op["replaced_by"] == newcomers

    # The job was told, requeued, and started on the spare: no boot in between (a requeued job
    # waits the credential lifetime plus 1 s before it starts: 5 s in the harness).
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=60, what="job running again")
    info = fleet.harness.job(job)
    assert info.restarts >= 1 and info.state == "RUNNING" and info.nodes == "node2", info
    started = datetime.fromisoformat(fleet.slurm.job(str(job))["StartTime"]).timestamp()
    assert started - fault <= 30, f"the job trained again {started - fault:.0f} s after the fault"
    # The faulty node was replaced in its group, desired capacity kept; the newcomer is the spare.
    assert fleet.group()["DesiredCapacity"] == desired
    assert bad not in fleet.in_service() and newcomers[0] in fleet.in_service()
    assert len(fleet.terminations(sandbox)) == 1
    dyn1 = next(n for n in fleet.slurm.nodes() if n.name == "dyn1")
    assert "DRAIN" in dyn1.state and dyn1.reason.startswith(SPARE_REASON), dyn1
    assert hold_reservation("dyn1") not in {r["ReservationName"] for r in fleet.slurm.reservations()}
    (journaled,) = heal_ops(fleet.journal)
    intents = [e.step for e in fleet.journal.events(journaled.op_id) if e.event_type == "intent"]
    assert intents == ["checkpoint", "admit_spare", "terminate"]
    assert journaled.state is MoveState.DONE
    assert sandbox.client.iam()["denials"] == []

    # The next pass sees the newcomer as the spare, and the next fault swaps it in.
    again = fleet.heal(dry_run=True)
    assert decision(again, "dyn1").reason == "hot spare (held)"
    fleet.drain("node2", "gpufleet: xid: GPU 0000:b9:00: Xid 64 row remapping failure")
    held = fleet.heal(dry_run=True)  # the group's budget (1 an hour) is spent: no swap either
    assert decision(held, "node2").action is HealAction.LEAVE and decision(held, "node2").swap_with == ""
    after = fleet.heal(dry_run=True, budget=HealBudget(per_group_per_hour=2, per_pool_per_hour=4))
    assert decision(after, "node2").action is HealAction.REPLACE and decision(after, "node2").swap_with == "dyn1"


def test_without_a_spare_a_replacement_boots_as_before(fleet, sandbox):
    fleet.drain("node1", "gpufleet: ecc: GPU 0000:b9:00: row remapping failed (no spare rows)")
    report = fleet.heal()
    assert decision(report, "node1").swap_with == ""
    (op,) = report.operations
    assert op["state"] == "DONE" and op["swapped_in"] is None and len(op["replaced_by"]) == 1
    (journaled,) = heal_ops(fleet.journal)
    assert "admit_spare" not in [e.step for e in fleet.journal.events(journaled.op_id) if e.event_type == "intent"]


def with_spares(sandbox, pool: str, n: int) -> None:
    """The inventory as it is collected once the platform stack says ``spares: n`` on the pool."""
    doc = json.loads(sandbox.inventory.read_text())
    for stack in doc["stacks"].values():
        for p in stack.get("pools") or ():
            if p["name"] == pool:
                p["spares"] = n
    sandbox.inventory.write_text(json.dumps(doc))


def test_a_pool_short_of_its_spares_launches_gates_and_holds_one(fleet, sandbox):
    pool = fleet.ref.group.pool
    with_spares(sandbox, pool, 1)
    desired = fleet.group()["DesiredCapacity"]
    before = set(fleet.in_service())
    newcomers: list[str] = []

    def progress(message: str) -> None:
        found = re.search(r": (i-[0-9a-f]+) InService as a hot spare of ", message)
        if found and not newcomers:
            newcomers.append(found.group(1))
            fleet.harness.register_dynamic_node("dyn1", held=True)
            fleet.slurm.update_nodes(["dyn1"], Comment=found.group(1))

    report = fleet.heal(progress=progress)
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "DONE" and op["replaced_by"] == newcomers, report
    assert fleet.group()["DesiredCapacity"] == desired + 1
    assert set(fleet.in_service()) == before | set(newcomers)
    dyn1 = next(n for n in fleet.slurm.nodes() if n.name == "dyn1")
    assert "DRAIN" in dyn1.state and dyn1.reason.startswith(SPARE_REASON), dyn1
    (journaled,) = heal_ops(fleet.journal)
    states = [e.state for e in fleet.journal.events(journaled.op_id) if e.event_type == "transition"]
    assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY",
                      "JOINED", "DONE"]
    assert not fleet.terminations(sandbox) and sandbox.client.iam()["denials"] == []
    # Held now: the next pass launches nothing, and the spare counts for no past replacement.
    again = fleet.heal()
    assert not again.operations and fleet.group()["DesiredCapacity"] == desired + 1
    assert decision(again, "dyn1").reason == "hot spare (held)"


def test_no_spare_is_launched_into_a_reservation_the_groups_fill(fleet, sandbox):
    pool = fleet.ref.group.pool
    with_spares(sandbox, pool, 1)
    # Another consumer's group takes the pool's last slot: no room for the spare.
    other = next(g for g in fleet.inventory.node_groups if g.group.pool == pool and g.stack != fleet.ref.stack)
    asg = fleet.clients(other.stack, "autoscaling")
    now = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[other.group.asg_name])["AutoScalingGroups"][0]
    claimed = sum(fleet.clients(g.stack, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[g.group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"]
        for g in fleet.inventory.node_groups if g.group.pool == pool)
    count = fleet.inventory.pool(pool).count
    asg.set_desired_capacity(AutoScalingGroupName=other.group.asg_name,
                             DesiredCapacity=now["DesiredCapacity"] + count - claimed)
    desired = fleet.group()["DesiredCapacity"]
    report = fleet.heal()
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "ROLLED_BACK"
    assert fleet.group()["DesiredCapacity"] == desired
    (journaled,) = heal_ops(fleet.journal)
    back = next(e for e in fleet.journal.events(journaled.op_id) if e.state == "ROLLING_BACK")
    assert back.detail["no_slot"] == f"pool {pool}: its groups claim {count} of {count} slots"
    # A loop does not journal a launch every pass: the next one waits out the budget's window.
    again = fleet.heal()
    assert not again.operations and len(heal_ops(fleet.journal)) == 1
    assert any(n.startswith(f"no hot spare launched in pool {pool}: {journaled.op_id} rolled back") for n in again.notes)

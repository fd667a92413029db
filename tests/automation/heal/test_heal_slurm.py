"""`gpufleet heal` on the real local Slurm (tests/slurm_harness.py) with the emulated Auto Scaling
groups of the sandbox: the local Slurm's nodes carry the training group's InService instance ids
(in their Comment, as the bootstrap sets them), the health hook's drain reasons are set with
scontrol as the hook sets them, the journal is the sandbox's DynamoDB table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.service import (
    HealArgs,
    heal_ops,
    heal_pass,
    request_replace,
    slurm_groups,
)
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.lease import Leases
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.slurm_client import SlurmClient
from tests.conftest import REPO
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = pytest.mark.slurm


class Fleet:
    def __init__(self, sandbox, slurm, tmp_path):
        self.inventory_path = sandbox.inventory
        self.inventory = load_inventory(sandbox.inventory)
        self.clients = cached_clients(AwsAccess(self.inventory, operation="heal-test"))
        self.ref = slurm_groups(self.inventory)[0]
        self.asg = self.clients(self.ref.stack, "autoscaling")
        self.slurm = SlurmClient(env=slurm.env)
        self.harness = slurm
        self.journal = Journal(self.clients(self.inventory.platform_stack, "dynamodb"), self.inventory.journal_table)
        healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
        self.probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": self.ref.group.instance_type,
                                     "PATH": f"{healthy}:{os.environ['PATH']}"}, timeout_s=120)
        ids = self.in_service()
        assert len(ids) >= 1, "the applied Slurm group has InService instances"
        self.ids = dict(zip(("node1", "node2", "node3"), ids, strict=False))
        for node, iid in self.ids.items():
            self.slurm.update_nodes([node], Comment=iid)

    def group(self) -> dict:
        return self.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.ref.group.asg_name])["AutoScalingGroups"][0]

    def in_service(self) -> list[str]:
        return sorted(i["InstanceId"] for i in self.group()["Instances"] if i["LifecycleState"] == "InService")

    def drain(self, node: str, reason: str) -> None:
        self.slurm.update_nodes([node], State="DRAIN", Reason=reason)

    def heal(self, **kw) -> object:
        progress = kw.pop("progress", lambda _m: None)
        args = HealArgs(inventory=self.inventory_path, probe="local",
                        budget=kw.pop("budget", HealBudget(per_group_per_hour=1, per_pool_per_hour=2)),
                        # No slurmd runs for the sandbox's newcomers here (the integrated sandbox,
                        # test_heal_integrated.py, runs them): gate at once.
                        limits=Limits(drain_timeout_s=60, replace_timeout_s=60, reboot_timeout_s=5, poll_s=0.5,
                                      join_timeout_s=0, checkpoint_grace_s=kw.pop("grace", None)),
                        **kw)
        return heal_pass(args, clients=self.clients, slurm=self.slurm, probes=lambda stack: self.probe,
                         journal=self.journal, progress=progress)

    def terminations(self, sandbox) -> list[dict]:
        return [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]


@pytest.fixture
def fleet(sandbox, local_slurm, tmp_path):
    return Fleet(sandbox, local_slurm, tmp_path)


CHECKPOINTING_JOB = """#!/bin/bash
# As the torch runtime does: USR1 means checkpoint now, then requeue the job itself.
trap 'echo "checkpoint at $(date +%s)"; scontrol requeue "$SLURM_JOB_ID"' USR1
for _ in $(seq 300); do sleep 1 & wait $!; done
"""
TOLD_JOB = """#!/bin/bash
# A job that only logs the checkpoint signal: the healer requeues it once its grace is over.
trap 'echo "checkpoint at $(date +%s)"' USR1
for _ in $(seq 300); do sleep 1 & wait $!; done
"""


def decision(report, node):
    return next(d for d in report.plan.decisions if d.node == node)


def test_leave_an_application_xid_and_an_operators_own_drain(fleet):
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 13 graphics engine exception (application)")
    fleet.drain("node2", "disk swap by ops")
    report = fleet.heal()
    assert decision(report, "node1").action is HealAction.LEAVE
    assert decision(report, "node1").signals == ("xid:13",)
    assert decision(report, "node2").action is HealAction.LEAVE and decision(report, "node2").signals == ()
    assert not report.operations and not heal_ops(fleet.journal)


def test_replace_a_worn_out_gpu_keeps_desired_capacity_and_gates_the_newcomer(fleet, sandbox):
    desired = fleet.group()["DesiredCapacity"]
    bad = fleet.ids["node1"]
    job = fleet.harness.sbatch(CHECKPOINTING_JOB, "-N", "1", "-w", "node1", "--requeue")
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=30, what="job running")
    fleet.drain("node1", "gpufleet: ecc: GPU 0000:b9:00: row remapping failed (no spare rows)")
    report = fleet.heal()
    d = decision(report, "node1")
    assert d.action is HealAction.REPLACE and d.signals == ("row_remap_failure",)
    (op,) = report.operations
    assert op["state"] == "DONE" and op["instance_id"] == bad and len(op["replaced_by"]) == 1
    after = fleet.group()
    assert after["DesiredCapacity"] == desired
    assert bad not in fleet.in_service() and op["replaced_by"][0] in fleet.in_service()
    calls = [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
    assert len(calls) == 1
    # The job was told, then requeued: it is back in the queue, not on node1.
    stdout = fleet.slurm.job(str(job)).get("StdOut", "")
    assert "checkpoint at" in Path(stdout).read_text(), "the job got USR1 before its requeue"
    info = fleet.harness.job(job)
    assert info.restarts >= 1 and info.state in {"PENDING", "RUNNING"} and info.nodes != "node1", info
    states = [e.state for e in fleet.journal.events(op["op_id"]) if e.event_type == "transition"]
    assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY",
                      "JOINED", "DONE"]
    # Within its grace the job checkpointed and requeued itself: the healer requeued nothing.
    drained = next(e for e in fleet.journal.events(op["op_id"]) if e.event_type == "transition" and e.state == "DRAINED")
    assert drained.detail["left_on_their_own"] == [str(job)] and drained.detail["requeued"] == []
    locked = next(e for e in fleet.journal.events(op["op_id"]) if e.state == "LOCKED")
    assert locked.detail["pool"] == fleet.ref.group.pool and locked.detail["token"] >= 1
    assert not Leases(fleet.journal).held()
    # Every call went through the rendered operator and automation policies, and none was refused.
    assert sandbox.client.iam()["enforce"] is True and sandbox.client.iam()["denials"] == []


def test_a_pool_leased_by_a_move_defers_the_replacement_and_journals_nothing(fleet, sandbox):
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 64 row remapping failure")
    leases = Leases(fleet.journal)
    move = leases.acquire(fleet.ref.group.pool, "rb-20261201-000000-0000aa", kind="rebalance")
    try:
        report = fleet.heal()
    finally:
        leases.release(move)
    assert decision(report, "node1").action is HealAction.REPLACE
    assert not report.operations and not heal_ops(fleet.journal) and not fleet.terminations(sandbox)
    assert any("deferred" in n and "rebalance rb-20261201-000000-0000aa" in n for n in report.notes), report.notes
    # The pool free again, the next pass replaces it.
    again = fleet.heal()
    assert [(o["node"], o["state"]) for o in again.operations] == [("node1", "DONE")]
    assert len(fleet.terminations(sandbox)) == 1


def test_a_lease_taken_over_mid_operation_stops_the_healer_before_its_next_call(fleet, sandbox):
    """Another process takes the pool's lease (to its clock ours has expired) while the healer
    drains node1: the requeue that comes next is not made, nor the termination; once the lease is
    free again the next pass resumes the same operation."""
    job = fleet.harness.sbatch(TOLD_JOB, "-N", "1", "-w", "node1", "--requeue")
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=30, what="job running")
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 64 row remapping failure")
    pool = fleet.ref.group.pool
    later = Journal(fleet.clients(fleet.inventory.platform_stack, "dynamodb"), fleet.inventory.journal_table,
                    owner="elsewhere:1:1", clock=lambda: time.time() + 3600)
    stolen = []

    def progress(message: str) -> None:
        if message.startswith("node1: drained") and not stolen:
            stolen.append(Leases(later).acquire(pool, "rb-20261201-000000-0000bb", kind="rebalance"))

    try:
        report = fleet.heal(progress=progress, grace=1.0)
        assert stolen, "the healer drained node1"
        (op,) = heal_ops(fleet.journal)
        assert op.state is MoveState.CHECKPOINTING and not report.operations
        assert any("stopped" in n and "lost the lease" in n for n in report.notes), report.notes
        assert not fleet.terminations(sandbox)
        info = fleet.harness.job(job)
        assert info.restarts == 0 and info.state == "RUNNING", info
        assert Leases(fleet.journal).holder(pool).op_id == "rb-20261201-000000-0000bb"
    finally:
        for held in stolen:
            Leases(later).release(held)
    report = fleet.heal(grace=1.0)
    assert report.resumed == (op.op_id,) and report.operations[0]["state"] == "DONE"
    assert fleet.harness.job(job).restarts >= 1 and len(fleet.terminations(sandbox)) == 1
    assert not Leases(fleet.journal).held()


def test_the_request_path_and_the_budget(fleet):
    if len(fleet.ids) < 2:
        pytest.skip("needs two InService instances in the Slurm group")
    request_replace(fleet.slurm, "node2")
    node2 = next(n for n in fleet.slurm.nodes() if n.name == "node2")
    assert "DRAIN" in node2.state and node2.reason.startswith("gpufleet replace [")
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 64 row remapping failure")
    report = fleet.heal(budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=5, pattern_fraction=1.0))
    assert decision(report, "node2").action is HealAction.REPLACE
    assert decision(report, "node2").signals == ("replace_requested",)
    held = decision(report, "node1")
    assert held.action is HealAction.LEAVE and held.wanted is HealAction.REPLACE
    assert held.reason.startswith(f"held: budget: 1 replacement(s) in {fleet.ref.stack}/{fleet.ref.group.name}")
    assert [o["node"] for o in report.operations] == ["node2"]
    # The next pass still counts it from the journal.
    again = fleet.heal(budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=5, pattern_fraction=1.0))
    assert decision(again, "node1").action is HealAction.LEAVE and not again.operations


def test_request_for_an_unknown_node_is_bad_input(fleet):
    with pytest.raises(Exception) as err:
        request_replace(fleet.slurm, "node99")
    assert getattr(err.value, "code", None) == 2 and "node99" in str(err.value)


def test_reboot_asks_the_real_slurmctld(fleet):
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 79 GPU has fallen off the bus")
    dry = fleet.heal(dry_run=True)
    assert decision(dry, "node1").action is HealAction.REBOOT and not heal_ops(fleet.journal)
    # The harness's slurmd has no RebootProgram: slurmctld refuses our exact call, and says why;
    # the pass goes on with the other nodes (node3's request) and reports the failure.
    request_replace(fleet.slurm, "node3")
    report = fleet.heal()
    assert len(report.failures) == 1, [f["error"] for f in report.failures]
    (failed,) = report.failures
    assert failed["node"] == "node1" and failed["state"] == "DRAINED" and not report.ok
    assert "scontrol reboot ASAP nextstate=RESUME" in failed["error"]
    assert "RebootProgram" in failed["error"], failed
    assert [(o["node"], o["state"]) for o in report.operations] == [("node3", "DONE")]
    (op,) = [o for o in heal_ops(fleet.journal) if o.body["node"] == "node1"]
    assert op.state is MoveState.DRAINED and op.body["action"] == "reboot"
    intents = [e.step for e in fleet.journal.events(op.op_id) if e.event_type == "intent"]
    assert intents == ["checkpoint", "reboot"]


def test_a_healer_killed_mid_pass_resumes_from_its_journal(fleet, sandbox, tmp_path):
    """SIGKILL `gpufleet heal` while it waits for a node's job to leave; the next pass finishes the
    same operation (same op id, one termination), under the same lease."""
    job = fleet.harness.sbatch(CHECKPOINTING_JOB, "-N", "1", "-w", "node1", "--no-requeue")
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=30, what="job running")
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 64 row remapping failure")
    healthy = fake_tools(tmp_path / "cli-healthy", "nvidia_smi_q_h100x8_healthy.xml")
    env = {**os.environ, **sandbox.env, **fleet.harness.env, "PATH": f"{healthy}:{os.environ['PATH']}",
           "GPUFLEET_INSTANCE_TYPE": fleet.ref.group.instance_type}
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet.automation", "heal", "--inventory",
                             str(sandbox.inventory), "--probe", "local"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        fleet.harness.wait_until(
            lambda: [o for o in heal_ops(fleet.journal) if o.state is MoveState.CHECKPOINTING],
            timeout=120, what="the healer waiting for node1's job")
    finally:
        proc.kill()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == -9, out
    (op,) = heal_ops(fleet.journal)
    assert Leases(fleet.journal).holder(fleet.ref.group.pool).op_id == op.op_id  # the dead healer's lease
    fleet.harness.run("scancel", str(job))
    report = fleet.heal()
    assert report.resumed == (op.op_id,)
    (done,) = [o for o in report.operations if o["op_id"] == op.op_id]
    assert done["state"] == "DONE" and done["instance_id"] == fleet.ids["node1"] and done["replaced_by"]
    assert len([r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]) == 1
    assert [o.op_id for o in heal_ops(fleet.journal)] == [op.op_id]
    assert not Leases(fleet.journal).held()
    assert sandbox.client.iam()["denials"] == []


def test_cli_dry_run_as_json(fleet, sandbox):
    fleet.drain("node1", "gpufleet: xid: GPU 0000:b9:00: Xid 79 GPU has fallen off the bus")
    env = {**os.environ, **sandbox.env, **fleet.harness.env}
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation", "heal", "--inventory", str(sandbox.inventory),
                           "--dry-run", "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["dry_run"] is True and not doc["operations"]
    (node1,) = [d for d in doc["decisions"] if d["node"] == "node1"]
    assert node1["action"] == "reboot" and node1["signals"] == ["xid:79"]
    assert not heal_ops(fleet.journal)
    bad = subprocess.run([sys.executable, "-m", "gpufleet.automation", "heal", "--inventory", str(sandbox.inventory),
                          "--loop", "--interval", "0.01", "--json"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "--interval 0.01" in bad.stderr

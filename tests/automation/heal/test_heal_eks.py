"""`gpufleet heal` on EKS against the Kubernetes API fake on 127.0.0.1 (tests/fakes/kube.py: every
object it receives validated against the official schemas, evictions under PodDisruptionBudgets),
with the sandbox's Auto Scaling groups (IAM enforced): the ``eks`` fixture (eks_fleet.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.kube_service import (
    default_kube,
    request_replace,
)
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.lease import Leases
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import BadInputError
from tests.automation.heal.eks_fleet import HOLD, UNHEALTHY
from tests.conftest import REPO
from tests.lifecycle.health.fixture_runner import fake_tools


def decision(report, node):
    return next(d for d in report.plan.decisions if d.node == node)


def transitions(journal, op_id):
    return [e.state for e in journal.events(op_id) if e.event_type == "transition"]


def test_the_replace_label_cordons_evicts_terminates_and_admits_the_gated_newcomer(eks, sandbox):
    desired = eks.group()["DesiredCapacity"]
    eks.kube.add_pod("train", "worker-0", "node-a", labels={"app": "train"})
    eks.kube.add_pod("kube-system", "dcgm-a", "node-a", daemonset=True)
    request_replace(default_kube("inference"), "node-a")
    assert eks.kube.nodes["node-a"]["metadata"]["labels"]["gpufleet.io/replace"] == "true"

    report = eks.heal()
    d = decision(report, "node-a")
    assert d.action is HealAction.REPLACE and d.signals == ("replace_requested",)
    assert decision(report, "node-b").action is HealAction.LEAVE
    assert "system-1" not in {x.node for x in report.plan.decisions}
    assert len(report.operations) == 1, report.to_dict()
    (op,) = report.operations
    assert op["state"] == "DONE" and op["instance_id"] == eks.a and len(op["replaced_by"]) == 1, report.to_dict()
    (fresh,) = op["replaced_by"]
    assert eks.group()["DesiredCapacity"] == desired
    assert eks.a not in eks.in_service() and fresh in eks.in_service()
    # Cordoned before the eviction (the job's SIGTERM, its checkpoint signal); the DaemonSet pod stays.
    cordon = eks.kube.requests.index(("PATCH", "/api/v1/nodes/node-a"))
    evict = eks.kube.requests.index(("POST", "/api/v1/namespaces/train/pods/worker-0/eviction"))
    assert cordon < evict
    assert eks.kube.nodes["node-a"]["spec"]["unschedulable"] is True
    assert ("train", "worker-0") not in eks.kube.pods and ("kube-system", "dcgm-a") in eks.kube.pods
    # The newcomer registered held, was gated once registered, and admitted: the hold is gone.
    assert eks.probe.seen == [(fresh, True)]
    newcomer = eks.kube.nodes[f"ip-{fresh}"]
    assert not [t for t in newcomer["spec"]["taints"] if t["key"] == HOLD["key"]]
    assert transitions(eks.journal, op["op_id"]) == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED",
                                                     "ACQUIRED", "HEALTHY", "JOINED", "DONE"]
    (journaled,) = heal_ops(eks.journal)
    assert journaled.body["orchestrator"] == "eks" and journaled.body["stack"] == "inference"
    assert not Leases(eks.journal).held()
    assert eks.kube.rejected == []
    terminations = [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
    assert len(terminations) == 1
    assert sandbox.client.iam()["enforce"] is True and sandbox.client.iam()["denials"] == []


def test_not_ready_past_the_bound_is_replaced_within_the_budget_a_request_first(eks):
    eks.not_ready("node-a", minutes=30)
    eks.kube.nodes["node-b"]["metadata"]["labels"]["gpufleet.io/replace"] = "true"
    report = eks.heal(budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=5))
    b, a = decision(report, "node-b"), decision(report, "node-a")
    assert b.action is HealAction.REPLACE
    assert a.wanted is HealAction.REPLACE and a.action is HealAction.LEAVE
    assert a.reason.startswith("held: budget: 1 replacement(s) in inference/serve-h100"), a.reason
    assert [op["node"] for op in report.operations] == ["node-b"] and report.operations[0]["state"] == "DONE"
    # The next pass still holds node-a: the journaled replacement counts for the hour.
    again = eks.heal(budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=5))
    assert decision(again, "node-a").action is HealAction.LEAVE and not again.operations


def test_not_ready_under_the_bound_and_a_reboot_class_taint_are_left(eks):
    eks.not_ready("node-a", minutes=2)
    eks.kube.nodes["node-b"]["spec"]["taints"].append({"key": UNHEALTHY, "value": "xid", "effect": "NoSchedule"})
    report = eks.heal()
    a, b = decision(report, "node-a"), decision(report, "node-b")
    assert a.action is HealAction.LEAVE and a.wanted is HealAction.LEAVE and "under the table's 10 min" in a.reason
    assert b.wanted is HealAction.REBOOT and b.action is HealAction.LEAVE and b.signals == ("health_check_failed",)
    assert "no reboot on EKS" in b.reason
    assert not report.operations and not heal_ops(eks.journal)
    assert not [r for r in eks.kube.requests if r[0] != "GET"]


def test_a_disruption_budget_stalls_the_drain_and_the_next_pass_resumes_it(eks):
    eks.kube.add_pod("serve", "model-a", "node-a", labels={"app": "model"})
    eks.kube.pdbs.append(({"app": "model"}, 1))  # the only replica must stay up
    eks.kube.nodes["node-a"]["metadata"]["labels"]["gpufleet.io/replace"] = "true"
    first = eks.heal(limits=Limits(drain_timeout_s=1, replace_timeout_s=60, poll_s=0.2))
    (op,) = first.operations
    assert op["state"] == "CHECKPOINTING" and eks.a in eks.in_service()
    assert not Leases(eks.journal).held()  # released while the drain waits: the pool is not in flux
    eks.kube.add_pod("serve", "model-b", "node-b", labels={"app": "model"})  # a replica elsewhere
    second = eks.heal()
    assert second.resumed == (op["op_id"],) and second.operations[0]["state"] == "DONE"
    assert eks.a not in eks.in_service()
    assert transitions(eks.journal, op["op_id"]).count("CHECKPOINTING") == 1


def test_request_for_an_unknown_node_is_bad_input(eks):
    with pytest.raises(BadInputError, match="no such Kubernetes node"):
        request_replace(default_kube("inference"), "node-z")
    assert not [r for r in eks.kube.requests if r[0] == "PATCH"]


def test_a_healer_killed_mid_drain_resumes_from_its_journal(eks, sandbox, tmp_path):
    """SIGKILL `gpufleet heal --orchestrator eks` while a disruption budget holds its drain; the next
    pass finishes the same operation (same op id, one termination)."""
    eks.kube.add_pod("serve", "model-a", "node-a", labels={"app": "model"})
    eks.kube.pdbs.append(({"app": "model"}, 1))
    eks.kube.nodes["node-a"]["metadata"]["labels"]["gpufleet.io/replace"] = "true"
    healthy = fake_tools(tmp_path / "cli-healthy", "nvidia_smi_q_h100x8_healthy.xml")
    env = {**os.environ, **sandbox.env, "PATH": f"{healthy}:{os.environ['PATH']}",
           "GPUFLEET_INSTANCE_TYPE": eks.ref.group.instance_type}
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet.automation", "heal", "--orchestrator", "eks",
                             "--inventory", str(sandbox.inventory), "--probe", "local"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    eviction = ("POST", "/api/v1/namespaces/serve/pods/model-a/eviction")
    try:
        deadline = time.monotonic() + 120
        while eviction not in eks.kube.requests and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.kill()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == -9, out
    (op,) = heal_ops(eks.journal)
    assert op.state is MoveState.CHECKPOINTING and op.body["orchestrator"] == "eks"
    assert Leases(eks.journal).holder(eks.ref.group.pool).op_id == op.op_id  # the dead healer's lease
    eks.kube.add_pod("serve", "model-b", "node-b", labels={"app": "model"})
    report = eks.heal()
    assert report.resumed == (op.op_id,)
    (done,) = report.operations
    assert done["op_id"] == op.op_id and done["state"] == "DONE" and done["replaced_by"]
    assert len([r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]) == 1
    assert not Leases(eks.journal).held()
    assert sandbox.client.iam()["denials"] == [] and eks.kube.rejected == []


def test_a_lost_node_is_replaced_though_its_pods_never_finish_terminating(eks):
    """NotReady for 30 minutes: its evicted pods stay marked deleted (no kubelet confirms them);
    the drain does not wait on them for ever."""
    eks.not_ready("node-a", minutes=30)
    eks.kube.add_pod("train", "worker-0", "node-a", labels={"app": "train"})
    report = eks.heal(limits=Limits(drain_timeout_s=20, replace_timeout_s=60, poll_s=0.2))
    assert decision(report, "node-a").action is HealAction.REPLACE
    assert len(report.operations) == 1, report.to_dict()
    (op,) = report.operations
    assert op["state"] == "DONE", report.to_dict()
    assert "deletionTimestamp" in eks.kube.pods[("train", "worker-0")]["metadata"]
    assert eks.a not in eks.in_service()


def test_cli_replace_on_eks_labels_the_node_and_bad_input_is_exit_2(eks, sandbox):
    env = {**os.environ, **sandbox.env}
    base = [sys.executable, "-m", "gpufleet.automation", "heal", "--orchestrator", "eks", "--inventory",
            str(sandbox.inventory)]

    def cli(*argv):
        return subprocess.run([*base, *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)

    unknown = cli("replace", "node-z")
    assert unknown.returncode == 2 and "no such Kubernetes node" in unknown.stderr, unknown.stderr
    wrong = cli("replace", "node-a", "--stack", "training")
    assert wrong.returncode == 2 and "not an EKS stack" in wrong.stderr, wrong.stderr
    sources = cli("--sources", "ec2,dmesg", "--dry-run")
    assert sources.returncode == 2 and "unknown dmesg" in sources.stderr, sources.stderr
    assert not [r for r in eks.kube.requests if r[0] == "PATCH"] and not heal_ops(eks.journal)
    # The request through the dry-run's eyes: labelled by hand, decided, nothing done.
    eks.kube.nodes["node-b"]["metadata"]["labels"]["gpufleet.io/replace"] = "true"
    dry = cli("--dry-run", "--json", "--sources", "")
    assert dry.returncode == 0, dry.stderr
    (b,) = [d for d in json.loads(dry.stdout)["decisions"] if d["node"] == "node-b"]
    assert b["action"] == "replace" and b["signals"] == ["replace_requested"]
    assert not heal_ops(eks.journal)

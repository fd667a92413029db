"""Moves whose inference side is Kubernetes (a fake API server on 127.0.0.1 behind the kubeconfig
context gpufleet-<stack>): victims chosen by their pods, cordoned and evicted under a
PodDisruptionBudget before release; new nodes count as joined only once the API reports them Ready."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from gpufleet.automation.health.gate import AcceptAllGate
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import MoveState
from tests.automation.stand_in import real_orchestrators
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.emulator

SERVE = "serve-h100"
HOLD = {"key": "gpufleet.io/unverified", "value": "gate", "effect": "NoSchedule"}
"""New nodes register with it (kubelet --register-with-taints) and serve nothing until admitted."""


@pytest.fixture
def kube(fleet, tmp_path, monkeypatch):
    with FakeKube() as fake:
        # the stack's context reaches the fake; the current context reaches nothing
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(fake.kubeconfig("gpufleet-inference")))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        yield fake


def executor_for(fleet, tmp_path):
    inventory = load_inventory(real_orchestrators(fleet.inventory_path, tmp_path / "inventory.json", without="training"))
    journal = Journal(fleet.client("platform", "dynamodb"), inventory.journal_table)
    return Executor(inventory, fleet.client, journal, lambda kind, stack: for_group(kind, stack=stack),
                    AcceptAllGate(), limits=Limits(poll_s=0.05, checkpoint_grace_s=0.3, drain_timeout_s=30,
                                                   acquire_timeout_s=30, join_timeout_s=30))


def serve_ids(fleet):
    doc = fleet.client("inference", "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.asg(SERVE)])
    return sorted(i["InstanceId"] for i in doc["AutoScalingGroups"][0]["Instances"])


def test_inference_nodes_are_cordoned_and_evicted_under_the_budget(fleet, kube, tmp_path):
    a, b = serve_ids(fleet)
    kube.add_node("node-a", a)
    kube.add_node("node-b", b)
    kube.add_pod("serve", "model-a", "node-a", labels={"app": "model"}, annotations={"gpufleet.io/last-checkpoint": "100"})
    kube.add_pod("serve", "model-b", "node-b", labels={"app": "model"}, annotations={"gpufleet.io/last-checkpoint": "200"})
    kube.add_pod("kube-system", "dcgm-b", "node-b", daemonset=True)
    kube.pdbs.append(({"app": "model"}, 2))  # two replicas must stay up
    ex = executor_for(fleet, tmp_path)
    plan = ex.plan(MoveRequest(from_role="inference", to_role="training", nodes=1))
    assert [v.instance_id for v in plan.victims] == [b]  # the more recent checkpoint loses less

    # the budget holds model-b until a replica comes up elsewhere (after the first refusal, however
    # long the drain takes to get there); the drain keeps retrying (429)
    stop = threading.Event()

    def replica_after_a_refusal() -> None:
        eviction = ("POST", "/api/v1/namespaces/serve/pods/model-b/eviction")
        deadline = time.monotonic() + 60
        while not stop.wait(0.05) and time.monotonic() < deadline:
            if eviction in kube.requests:
                kube.add_pod("serve", "model-c", "node-a", labels={"app": "model"})
                return

    helper = threading.Thread(target=replica_after_a_refusal, daemon=True)
    helper.start()
    try:
        op = ex.run(ex.start(plan, op_id="rb-kube"))
    finally:
        stop.set()
        helper.join(timeout=5)
    assert op.state is MoveState.DONE
    assert kube.nodes["node-b"]["spec"]["unschedulable"] is True
    assert ("serve", "model-b") not in kube.pods and ("kube-system", "dcgm-b") in kube.pods
    evictions = [p for m, p in kube.requests if p == "/api/v1/namespaces/serve/pods/model-b/eviction"]
    assert len(evictions) >= 2  # refused by the budget at least once, then granted
    assert b not in serve_ids(fleet) and fleet.desired()[SERVE] == 1
    fleet.check_invariant()


def test_new_inference_nodes_join_only_when_kubernetes_reports_them_ready(fleet, kube, tmp_path):
    before = set(serve_ids(fleet))
    stop = threading.Event()

    def kubelet() -> None:  # new instances register with the API server, Ready a moment later
        seen: set[str] = set()
        while not stop.wait(0.1):
            for iid in set(serve_ids(fleet)) - before - seen:
                kube.add_node(f"node-{iid}", iid, ready=False, taints=[HOLD])
                seen.add(iid)
            for iid in seen:
                kube.set_ready(f"node-{iid}")

    thread = threading.Thread(target=kubelet, daemon=True)
    thread.start()
    try:
        ex = executor_for(fleet, tmp_path)
        op = ex.run(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2)), op_id="rb-join"))
    finally:
        stop.set()
        thread.join(timeout=5)
    assert op.state is MoveState.DONE
    fresh = set(op.body["progress"]["acquired"])
    assert len(fresh) == 2 and all(f"node-{i}" in kube.nodes for i in fresh)
    assert all(kube.nodes[f"node-{i}"]["spec"]["taints"] == [] for i in fresh)  # admitted after the gate
    fleet.check_invariant()

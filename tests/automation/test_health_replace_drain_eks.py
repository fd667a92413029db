"""`health --replace` on an EKS group (the Kubernetes API fake at the HTTP boundary, objects
validated as the API server does): through the same adapter calls as on Slurm, the failed node is
cordoned and its pods evicted before the terminate. Kubernetes names no jobs (the eviction's
SIGTERM is the checkpoint signal), so there is no grace to wait out; a pod a disruption budget
keeps is retried until the bounded drain ends, and the failed node is replaced anyway."""

from __future__ import annotations

import os

import pytest
import yaml

from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.health.replace import HealthArgs, in_service, run_health
from gpufleet.automation.inventory import load_inventory
from gpufleet.lifecycle.health.results import Tier
from tests.automation.stand_in import real_orchestrators
from tests.automation.test_health_cli import clients_of
from tests.fakes.kube import FakeKube
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = pytest.mark.emulator


def replace_on_eks(sandbox, tmp_path, monkeypatch, *, blocked: bool):
    """serve-h100's two nodes on the fake, a model pod on each, the second node failed by its ECC
    check; ``blocked``: a disruption budget that never lets the failed node's pod go."""
    path = real_orchestrators(sandbox.inventory, tmp_path / "inventory.json", without="training")
    inventory = load_inventory(path)
    clients = clients_of(inventory)
    ref = next(g for g in inventory.node_groups if g.group.name == "serve-h100")
    a, b = sorted(in_service(clients(ref.stack, "autoscaling"), ref.group.asg_name)[1])
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp_path / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": ref.group.instance_type, "PATH": f"{healthy}:{os.environ['PATH']}"},
                       env_by_node={b: {"PATH": f"{dbe}:{os.environ['PATH']}"}}, timeout_s=120)
    with FakeKube() as kube:
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kube.kubeconfig("gpufleet-inference")))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        kube.add_node("node-a", a)
        kube.add_node("node-b", b)
        kube.add_pod("serve", "model-a", "node-a", labels={"app": "model"})
        kube.add_pod("serve", "model-b", "node-b", labels={"app": "model"})
        if blocked:
            kube.pdbs.append(({"app": "model"}, 2))  # both replicas must stay up
        messages: list[str] = []
        run = run_health(HealthArgs(pool=ref.group.pool, tiers=(Tier.QUICK,), replace=True, probe="local",
                                    inventory=path, replace_timeout_s=60, drain_timeout_s=3),
                         clients=clients, probes=lambda stack: probe, progress=messages.append)
        return run, b, kube, messages


def test_the_failed_node_is_cordoned_and_its_pods_evicted_before_the_terminate(sandbox, tmp_path, monkeypatch):
    run, bad, kube, messages = replace_on_eks(sandbox, tmp_path, monkeypatch, blocked=False)
    assert list(run.report.failed) == [bad]
    (drained,) = run.drains
    assert drained.orchestrator == "eks" and drained.nodes == (bad,)
    assert drained.grace_s == 0 and drained.signalled == () and drained.still_busy == ()
    assert kube.nodes["node-b"]["spec"].get("unschedulable") is True
    assert ("serve", "model-b") not in kube.pods and ("serve", "model-a") in kube.pods
    cordon = kube.requests.index(("PATCH", "/api/v1/nodes/node-b"))
    assert kube.requests.index(("POST", "/api/v1/namespaces/serve/pods/model-b/eviction")) > cordon
    assert messages.index(f"eks: drained {bad} before replacement") < messages.index(
        next(m for m in messages if m.startswith(f"{bad}: terminated")))
    assert len(run.replacements) == 1 and run.replacements[0].replaced_by and run.ok


def test_a_pod_its_budget_keeps_is_retried_then_the_node_is_replaced_anyway(sandbox, tmp_path, monkeypatch):
    run, bad, kube, messages = replace_on_eks(sandbox, tmp_path, monkeypatch, blocked=True)
    (drained,) = run.drains
    assert drained.still_busy == (bad,)
    evictions = [r for r in kube.requests if r == ("POST", "/api/v1/namespaces/serve/pods/model-b/eviction")]
    assert len(evictions) >= 2, "the drain retried the refused eviction"
    assert f"eks: {bad} still busy after 3 s: replaced anyway" in messages
    assert len(run.replacements) == 1 and run.replacements[0].instance_id == bad

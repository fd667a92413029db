"""The Kubernetes adapter against a fake API server on 127.0.0.1 (official client on the wire)."""

from __future__ import annotations

from kubernetes import client

from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator
from tests.fakes.kube import FakeKube


def adapter(fake: FakeKube) -> KubernetesOrchestrator:
    conf = client.Configuration()
    conf.host = fake.url
    return KubernetesOrchestrator(client.ApiClient(conf))


def test_drain_respects_the_disruption_budget_and_rollback_uncordons():
    with FakeKube() as fake:
        fake.add_node("n1", "i-0000000000000001")
        fake.add_node("n2", "i-0000000000000002")
        fake.add_node("n3", "i-0000000000000003", ready=False)
        fake.add_pod("ml", "serve-a", "n1", labels={"app": "serve"}, annotations={"gpufleet.io/last-checkpoint": "1700"})
        fake.add_pod("ml", "serve-b", "n2", labels={"app": "serve"})
        fake.add_pod("kube-system", "efa-plugin", "n1", daemonset=True)
        fake.pdbs.append(({"app": "serve"}, 2))
        k = adapter(fake)
        work = {w.instance_id: w for w in k.work(["i-0000000000000001", "i-0000000000000002", "i-0000000000000009"])}
        assert (work["i-0000000000000001"].busy, work["i-0000000000000001"].last_checkpoint) == (True, 1700.0)
        assert work["i-0000000000000002"].last_checkpoint is None and not work["i-0000000000000009"].known

        k.request_checkpoint(["i-0000000000000001"], "rebalance rb-1")
        assert fake.nodes["n1"]["spec"]["unschedulable"] is True
        k.evict(["i-0000000000000001"])  # the budget says no: 429, the pod stays
        assert ("ml", "serve-a") in fake.pods and k.drained(["i-0000000000000001"]) == set()
        fake.add_pod("ml", "serve-c", "n2", labels={"app": "serve"})  # a replica came up elsewhere
        k.evict(["i-0000000000000001"])
        assert ("ml", "serve-a") not in fake.pods and ("kube-system", "efa-plugin") in fake.pods
        assert k.drained(["i-0000000000000001"]) == {"i-0000000000000001"}

        assert k.ready(["i-0000000000000001", "i-0000000000000002", "i-0000000000000003"]) == {"i-0000000000000002"}
        k.undrain(["i-0000000000000001"])
        assert fake.nodes["n1"]["spec"]["unschedulable"] is False
        assert "i-0000000000000001" in k.ready(["i-0000000000000001"])
        hold = {"key": "gpufleet.io/unverified", "value": "gate", "effect": "NoSchedule"}
        gpu = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
        fake.add_node("n4", "i-0000000000000004", taints=[hold, gpu])  # new, Ready, held until admitted
        assert k.ready(["i-0000000000000004"]) == set()
        k.admit(["i-0000000000000004", "i-0000000000000009"])
        assert k.ready(["i-0000000000000004"]) == {"i-0000000000000004"}
        assert fake.nodes["n4"]["spec"]["taints"] == [gpu]
        evictions = [p for m, p in fake.requests if p.endswith("/eviction")]
        assert evictions.count("/api/v1/namespaces/ml/pods/serve-a/eviction") == 2

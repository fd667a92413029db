"""Kubernetes taint/label through the official client against the fake API server on 127.0.0.1
(tests/fakes/kube.py: merge patches, resourceVersion checked), and the Slurm drain reason."""

from __future__ import annotations

from kubernetes import client

from gpufleet.lifecycle.health.actions import (
    CHECK_LABEL,
    HEALTH_LABEL,
    TAINT_KEY,
    KubernetesActions,
    drain_reason,
)
from gpufleet.lifecycle.health.results import Action, CheckResult, NodeReport, Status, Tier
from tests.fakes.kube import FakeKube


def report(node: str, *results: CheckResult) -> NodeReport:
    return NodeReport(node=node, tiers=(Tier.QUICK,), results=results)


ECC = CheckResult(check="ecc", status=Status.FAIL, detail="GPU 00000000:86:00.0: 2 volatile uncorrectable",
                  action=Action.RESET, device="00000000:86:00.0")
OK = CheckResult(check="ecc", status=Status.PASS, detail="no uncorrectable ECC errors on 8 GPUs")


def actions(fake: FakeKube) -> KubernetesActions:
    conf = client.Configuration()
    conf.host = fake.url
    return KubernetesActions(client.CoreV1Api(client.ApiClient(conf)))


def test_failed_node_is_tainted_and_labelled_keeping_other_taints():
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    with FakeKube() as fake:
        fake.add_node("ip-10-0-1-5", taints=[other], labels={"role": "inference"})
        done = actions(fake).apply(report("ip-10-0-1-5", ECC))
        node = fake.nodes["ip-10-0-1-5"]
    assert done == f"tainted ip-10-0-1-5 {TAINT_KEY}=ecc:NoSchedule"
    assert node["spec"]["taints"] == [other, {"key": TAINT_KEY, "value": "ecc", "effect": "NoSchedule"}]
    assert node["metadata"]["labels"] == {"role": "inference", HEALTH_LABEL: "fail", CHECK_LABEL: "ecc"}


def test_healthy_again_removes_only_our_taint():
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    with FakeKube() as fake:
        fake.add_node("ip-10-0-1-5", taints=[other], labels={"role": "inference"})
        k = actions(fake)
        k.apply(report("ip-10-0-1-5", ECC))
        k.apply(report("ip-10-0-1-5", OK))
        node = fake.nodes["ip-10-0-1-5"]
    assert node["spec"]["taints"] == [other]
    assert node["metadata"]["labels"] == {"role": "inference", HEALTH_LABEL: "pass"}


def test_drain_reason_is_one_bounded_line():
    long = CheckResult(check="xid", status=Status.FAIL, detail="GPU 0000:b9:00: Xid 79\nfallen off " + "x" * 300)
    reason = drain_reason(long, more=2)
    assert reason.startswith("gpufleet: xid: GPU 0000:b9:00: Xid 79 fallen off") and "\n" not in reason
    assert len(reason) == 200 and reason.endswith("...")
    assert drain_reason(ECC) == "gpufleet: ecc: GPU 00000000:86:00.0: 2 volatile uncorrectable"

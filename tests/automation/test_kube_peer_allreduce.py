"""The deep tier's peer all-reduce on EKS, against the Kubernetes API fake at the HTTP boundary
(official client on the wire, every object validated against the official schemas): an Indexed
Job of two pods and a headless Service, run by the fake scheduler, Job controller, kubelet and
cluster DNS (tests/fakes/kubelet.py) as two local processes, the node health code under torchrun
with gloo on this host; the gate grades the newcomer."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
from kubernetes import client

from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.kube_pair import NODEGROUP_LABEL, PAIR_LABEL, RANK_SCRIPT
from gpufleet.automation.health.kube_probe import EFA_RESOURCE, GPU_RESOURCE, KubernetesJobProbe
from gpufleet.automation.health.peer import CHECK
from gpufleet.automation.health.probe import free_port
from gpufleet.automation.orchestrators.base import UNVERIFIED
from gpufleet.infra.eks_scheduling import POOL_ROLE_LABEL
from gpufleet.lifecycle.health.actions import TAINT_KEY as UNHEALTHY
from gpufleet.lifecycle.health.results import Status
from tests.automation.test_kube_probe import IMAGE, node_install  # noqa: F401 (the fixture)
from tests.fakes.kube import VERSIONS, FakeKube
from tests.fakes.kubelet import INDEX_LABEL, FakeKubelet

NEW, NEW_NODE = "i-0123456789abcdef0", "ip-10-30-1-17.ec2.internal"
PEER, PEER_NODE = "i-0fedcba9876543210", "ip-10-30-1-99.ec2.internal"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
HOLD = {"key": UNVERIFIED, "value": "true", "effect": "NoSchedule"}
LABELS = {"node.kubernetes.io/instance-type": "p5.48xlarge", POOL_ROLE_LABEL: "inference", NODEGROUP_LABEL: "inf-h100"}


def probe_on(fake: FakeKube, **kwargs: object) -> KubernetesJobProbe:
    conf = client.Configuration()
    conf.host = fake.url
    return KubernetesJobProbe(client.ApiClient(conf), image=IMAGE, timeout_s=300, poll_s=0.2, **kwargs)


def add_pair(fake: FakeKube) -> None:
    fake.add_node(NEW_NODE, NEW, taints=[HOLD, GPU_TAINT], labels=LABELS)
    fake.add_node(PEER_NODE, PEER, taints=[GPU_TAINT], labels=LABELS)


def test_peers_are_the_admitted_healthy_nodes_of_the_newcomers_group() -> None:
    with FakeKube() as fake:
        add_pair(fake)
        fake.add_node("ip-10-30-1-5.ec2.internal", "i-0aaaaaaaaaaaaaaa5",
                      taints=[GPU_TAINT, {"key": UNHEALTHY, "value": "ecc", "effect": "NoSchedule"}], labels=LABELS)
        fake.add_node("ip-10-30-1-6.ec2.internal", "i-0aaaaaaaaaaaaaaa6", taints=[GPU_TAINT], labels=LABELS, ready=False)
        fake.add_node("ip-10-30-2-7.ec2.internal", "i-0aaaaaaaaaaaaaaa7", taints=[GPU_TAINT],
                      labels={**LABELS, NODEGROUP_LABEL: "inf-h100-b"})
        fake.add_pod("default", "server-0", PEER_NODE, labels={"app": "server"})
        fake.add_pod("kube-system", "efa-plugin-x", NEW_NODE, daemonset=True)
        found = {c.name: c for c in probe_on(fake).peer_candidates([NEW])}
    assert found[NEW].aliases == {NEW_NODE} and not found[NEW].admitted and found[NEW].idle
    assert found[PEER].admitted and found[PEER].healthy and not found[PEER].idle
    assert (found[PEER].pool, found[PEER].group) == ("inference", "inf-h100")
    assert not found["i-0aaaaaaaaaaaaaaa5"].healthy and not found["i-0aaaaaaaaaaaaaaa6"].healthy
    assert found["i-0aaaaaaaaaaaaaaa7"].group == "inf-h100-b"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_pods_rank_script_passes_shellcheck(tmp_path) -> None:
    script = tmp_path / "rank.sh"
    script.write_text(f"#!/bin/sh\n{RANK_SCRIPT}\n")
    done = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


@pytest.mark.torch
@pytest.mark.parametrize("order", [[NEW_NODE, PEER_NODE], [PEER_NODE, NEW_NODE]], ids=["new-first", "peer-first"])
def test_new_node_and_its_peer_all_reduce_as_an_indexed_job(node_install, tmp_path, order) -> None:  # noqa: F811
    pytest.importorskip("torch")
    python, install_dir = node_install
    devices = tmp_path / "devices"  # this host: no GPUs, the all-reduce on gloo
    devices.mkdir()
    with FakeKube() as fake, FakeKubelet(fake, python, install_dir, devices, tmp_path, node_order=order) as kubelet:
        add_pair(fake)
        probe = probe_on(fake, node_env={"GPUFLEET_INSTANCE_TYPE": "none"}, pair_port=free_port())
        report = gate([NEW], probe, ("deep",))
        assert fake.rejected == []
        assert not any(c in ("jobs", "services") for c, _, _ in fake.objects)  # deleted after the report was read
        services = [path for method, path in fake.requests if method == "POST" and path.endswith("/services")]
    results = {r.check: r for r in report.nodes[0].report.results}
    assert results[CHECK].status is not Status.FAIL, report.summary
    # Only node rank 0 grades the all-reduce: a figure in the newcomer's report = rank 0 was the newcomer.
    assert results[CHECK].measured > 0 and results[CHECK].detail.startswith(f"all-reduce busbw with peer {PEER}: ")
    assert report.ok, report.summary
    assert len(services) == 1

    single, pair = kubelet.jobs
    spec = pair["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == pair["metadata"]["name"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {GPU_RESOURCE: "8", EFA_RESOURCE: "32"}
    assert {t["key"] for t in pod["tolerations"]} == {UNVERIFIED, GPU_RESOURCE}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FI_PROVIDER"] == "efa" and env["GPUFLEET_INSTANCE_TYPE"] == "none"  # p5: NCCL over EFA; node_env wins
    name = pair["metadata"]["name"]
    ran = {index: node for job, index, node, _ in kubelet.pods if job == name}
    assert ran == {0: order[0], 1: order[1]}  # one pod per node, index 0 wherever the scheduler put it
    # Both pods met at the newcomer's pod (rank 0), by its name under the headless Service.
    master = f"{name}-{order.index(NEW_NODE)}"
    assert sorted(kubelet.queries(name)) == sorted((f"{name}-{i}", f"{master}.{name}") for i in (0, 1))
    for version in VERSIONS:  # the official schema, strict, as the API server decodes it
        kubernetes_validate.validate(pair, version, strict=True)
    assert PAIR_LABEL in spec["template"]["metadata"]["labels"] and INDEX_LABEL not in spec["template"]["metadata"]["labels"]


def test_a_refused_pair_fails_the_newcomer_and_leaves_nothing_behind() -> None:
    with FakeKube() as fake:
        add_pair(fake)
        fake.refuse = {"jobs"}
        report = probe_on(fake).allreduce_with(NEW, PEER)
        assert fake.objects == {}  # the Service made for the pair is deleted too
        assert [m for m, path in fake.requests if "/services" in path] == ["POST", "DELETE"]
    (result,) = report.failures
    assert result.check == "probe" and result.detail.startswith(f"all-reduce with {PEER}: Kubernetes create job failed: ")


@pytest.mark.torch
def test_a_pair_whose_peer_pod_cannot_be_scheduled_fails_within_the_immediate_bound(node_install, tmp_path) -> None:  # noqa: F811
    pytest.importorskip("torch")
    python, install_dir = node_install
    devices = tmp_path / "devices"
    devices.mkdir()
    with FakeKube() as fake, FakeKubelet(fake, python, install_dir, devices, tmp_path) as kubelet:
        add_pair(fake)
        fake.nodes[PEER_NODE]["spec"]["taints"].append({"key": "example.com/dedicated", "value": "x",
                                                        "effect": "NoSchedule"})
        probe = probe_on(fake, node_env={"GPUFLEET_INSTANCE_TYPE": "none"}, pair_port=free_port(), immediate_s=3)
        report = probe.allreduce_with(NEW, PEER)
        assert fake.objects == {}
        kubelet.stop.set()
        kubelet.thread.join(timeout=60)
        assert not kubelet.thread.is_alive()  # the Job's deletion ended the newcomer's pod
    (result,) = report.failures
    assert result.check == "probe" and "not scheduled in 3 s (the peer busy" in result.detail, result.detail
    assert {i: node for job, i, node, _ in kubelet.pods if job.startswith("gpufleet-pair-")} == {0: NEW_NODE, 1: None}

"""The EKS health probe against the Kubernetes API fake at the HTTP boundary (official client on the
wire; every Job validated against the official schemas by the fake): a Job pinned to the new node,
run by a fake kubelet (tests/fakes/kubelet.py) that schedules it only as the real scheduler would
(the node its affinity names, every NoSchedule taint tolerated) and runs the container's command
with the node's interpreter over the bundle, devices given at the boundary."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes import client

from gpufleet.automation.health.gate import NodeCheckGate
from gpufleet.automation.health.kube_probe import EFA_RESOURCE, GPU_RESOURCE, KubernetesJobProbe
from gpufleet.automation.health.node_probes import health_image
from gpufleet.automation.orchestrators.base import UNVERIFIED
from gpufleet.lifecycle.bootstrap.bundle import bundle_files
from tests.fakes.kube import VERSIONS, FakeKube
from tests.fakes.kubelet import FakeKubelet
from tests.lifecycle.health.fixture_runner import fake_tools
from tests.lifecycle.node_image import node_python_and_bundle

IID = "i-0123456789abcdef0"
NODE = "ip-10-30-1-17.ec2.internal"
TAINTS = [{"key": UNVERIFIED, "value": "true", "effect": "NoSchedule"},
          {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
IMAGE = health_image("333333333333", "us-east-1", "b-test")


@pytest.fixture(scope="module")
def node_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return node_python_and_bundle(tmp_path_factory, bundle_files())


def probe_on(fake: FakeKube) -> KubernetesJobProbe:
    conf = client.Configuration()
    conf.host = fake.url
    return KubernetesJobProbe(client.ApiClient(conf), image=IMAGE, timeout_s=300, poll_s=0.1)


@pytest.mark.parametrize(("smi", "passes"), [("nvidia_smi_q_h100x8_healthy.xml", True),
                                              ("nvidia_smi_q_h100x8_dbe.xml", False)])
def test_a_job_pinned_to_the_held_node_runs_its_checks(node_install, tmp_path, smi, passes) -> None:
    python, install_dir = node_install
    devices = fake_tools(tmp_path / "devices", smi)
    with FakeKube() as fake, FakeKubelet(fake, python, install_dir, devices, tmp_path) as kubelet:
        fake.add_node(NODE, IID, taints=TAINTS, labels={"node.kubernetes.io/instance-type": "p5.48xlarge"})
        verdict = NodeCheckGate(lambda stack: probe_on(fake), ("quick",)).check("inference", [IID])
        assert fake.rejected == []
        (job,) = kubelet.jobs
        assert not any(c == "jobs" for c, _, _ in fake.objects)  # deleted after the report was read
    assert (verdict.passed == [IID]) is passes, verdict
    if not passes:
        assert verdict.failed[IID].startswith("ecc: ")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "333333333333.dkr.ecr.us-east-1.amazonaws.com/gpufleet/node-health:b-test"
    assert container["resources"]["limits"] == {GPU_RESOURCE: "8", EFA_RESOURCE: "32"}
    assert container["command"][:3] == ["python3", "-m", "gpufleet.lifecycle.health"]
    for version in VERSIONS:  # the official schema, strict, as the API server decodes it
        kubernetes_validate.validate(job, version, strict=True)


def test_a_node_not_registered_yet_fails_without_a_job() -> None:
    with FakeKube() as fake:
        verdict = NodeCheckGate(lambda stack: probe_on(fake), ("quick",)).check("inference", [IID])
        assert fake.objects == {}
    assert verdict.failed[IID] == "probe: no Kubernetes node with this instance id (not registered yet?)"

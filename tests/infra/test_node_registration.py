"""On the rendered graph, every GPU node group registers held and every node's user data runs the
bootstrap from a bundle the stack uploads.

EKS: the launch template's user data is MIME multipart (nodeadm NodeConfig + the bootstrap script),
the NodeConfig names the cluster as the program built it and registers the kubelet with the
``gpufleet.io/unverified`` hold, and the node group carries the same taints. Slurm: the user data
runs the same bootstrap (its registration hold lives in the bundle's join step). Golden files per
stack and node group, with the bundle's digest replaced by ``<bundle>`` so that only a change to the
user data itself shows up there.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import json
import re

import pytest
import yaml

from gpufleet.infra.eks_cluster import SERVICE_CIDR
from gpufleet.infra.eks_scheduling import (
    GPU_NODE_TAINTS,
    HOLD_TAINT,
    KUBERNETES_EFFECT,
    gpu_tolerations,
    node_agent_tolerations,
)
from gpufleet.infra.model import ClusterKind
from gpufleet.infra.offline.render import render_fleet
from gpufleet.infra.rendered import RenderedStack
from tests.golden import check_golden

BUNDLE_URI = re.compile(r"^bundle=(s3://([^/]+)/(\S+/)([0-9a-f]{12})/)$", re.M)
HOLD = f"{HOLD_TAINT.key}={HOLD_TAINT.value}:{KUBERNETES_EFFECT[HOLD_TAINT.effect]}"


@pytest.fixture(scope="module")
def training_on_eks(reference_specs) -> RenderedStack:
    """The training stack as an EKS cluster: both kinds are rendered for a consumer without PHI."""
    specs = {s.name: s for s in reference_specs}
    training = dataclasses.replace(specs["training"], cluster_kind=ClusterKind.EKS)
    return next(r for r in render_fleet([specs["platform"], training]) if r.spec.name == "training")


def consumers(rendered_fleet, training_on_eks) -> list[tuple[str, RenderedStack]]:
    return [("training.slurm", rendered_fleet["training"]), ("inference.eks", rendered_fleet["inference"]),
            ("training.eks", training_on_eks)]


def gpu_user_data(stack: RenderedStack) -> dict[str, str]:
    """Node group -> decoded user data of its EfaNodeTemplate's launch template."""
    found = {}
    for lt in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        if "gpufleet:compute:EfaNodeTemplate" in lt.urn:
            assert lt.inputs.get("userData"), f"{lt.urn}: no user data"
            found[lt.name.removesuffix("-lt")] = base64.b64decode(lt.inputs["userData"]).decode()
    assert set(found) == {g.name for g in stack.spec.node_groups}, stack.spec.name
    return found


def bootstrap_script(stack: RenderedStack, group: str, script: str) -> None:
    """The script fetches a bundle the stack uploads (on_create and the group's node.env among it) and runs it."""
    match = BUNDLE_URI.search(script)
    assert match, f"{stack.spec.name}/{group}: no bundle URI in the user data"
    _, bucket, prefix, version = match.groups()
    assert f'install -m 0644 "$lifecycle/"nodes/{group}.env /etc/gpufleet/node.env' in script
    assert script.rstrip().endswith('exec bash "$lifecycle/bootstrap/on_create.sh" /etc/gpufleet/node.env')
    objects = {o.inputs["key"]: o for o in stack.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    base = f"{prefix}{version}/"
    for path in ("bootstrap/on_create.sh", "bootstrap/steps/60-health-gate.sh", "health/__main__.py",
                 f"nodes/{group}.env"):
        assert base + path in objects, f"{stack.spec.name}: the user data fetches {base}{path}, which is not uploaded"
    env = objects[f"{base}nodes/{group}.env"].inputs["content"]
    assert f"GPUFLEET_NODE_GROUP={group}" in env and f"GPUFLEET_BUNDLE_VERSION={version}" in env
    buckets = {b.outputs.get("bucket") or b.inputs.get("bucket") for b in stack.of_type("aws:s3/bucket:Bucket")}
    assert bucket in buckets, f"{stack.spec.name}: bundle bucket {bucket} is not the stack's own"


def eks_parts(text: str) -> tuple[dict, str]:
    message = email.message_from_string(text)
    assert message.get_content_type() == "multipart/mixed"
    parts = {p.get_content_type(): p.get_payload() for p in message.walk() if not p.is_multipart()}
    assert list(parts) == ["application/node.eks.aws", "text/x-shellscript"], list(parts)
    return yaml.safe_load(parts["application/node.eks.aws"]), parts["text/x-shellscript"]


def test_every_gpu_node_runs_the_bootstrap_and_every_eks_group_registers_held(rendered_fleet, training_on_eks):
    for label, stack in consumers(rendered_fleet, training_on_eks):
        node_groups = {g.name.removesuffix("-nodes"): g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup")
                       if g.name != "eks-system"}
        for group, text in gpu_user_data(stack).items():
            if stack.spec.cluster_kind is not ClusterKind.EKS:
                bootstrap_script(stack, group, text)
                assert not node_groups
                continue
            config, script = eks_parts(text)
            bootstrap_script(stack, group, script)
            assert config["apiVersion"] == "node.eks.aws/v1alpha1" and config["kind"] == "NodeConfig"
            [cluster] = stack.of_type("eks:index:Cluster")
            server = json.loads(cluster.outputs["kubeconfigJson"])["clusters"][0]["cluster"]
            assert config["spec"]["cluster"] == {
                "name": f"gpufleet-{stack.spec.name}", "apiServerEndpoint": server["server"],
                "certificateAuthority": server["certificate-authority-data"], "cidr": SERVICE_CIDR}, label
            assert cluster.inputs["kubernetesServiceIpAddressRange"] == SERVICE_CIDR
            [registered] = [f.split("=", 1)[1] for f in config["spec"]["kubelet"]["flags"]
                            if f.startswith("--register-with-taints=")]
            assert registered.split(",")[0] == HOLD, label
            taints = node_groups[group].inputs["taints"]
            assert {"key": HOLD_TAINT.key, "value": HOLD_TAINT.value, "effect": "NO_SCHEDULE"} in taints, label
            assert len(taints) == len(GPU_NODE_TAINTS) == len(registered.split(","))


@pytest.mark.parametrize("label", ["training.slurm", "inference.eks", "training.eks"])
def test_gpu_user_data_matches_golden(rendered_fleet, training_on_eks, label):
    stack = dict(consumers(rendered_fleet, training_on_eks))[label]
    for group, text in sorted(gpu_user_data(stack).items()):
        text = BUNDLE_URI.sub(lambda m: f"bundle=s3://{m.group(2)}/{m.group(3)}<bundle>/", text)
        check_golden(f"rendered/user_data.{label}.{group}.txt", text)


def test_workloads_never_tolerate_the_hold_and_node_agents_do(training_on_eks):
    """Only the gate's probe may land on a held node: Kueue's flavors (every training job) and the
    job renderer's tolerations leave the hold out; the device plugins must tolerate it."""
    flavors = [r for r in training_on_eks.resources if r.type.endswith(":ResourceFlavor")]
    assert flavors
    for flavor in flavors:
        assert HOLD_TAINT.key not in {t["key"] for t in flavor.inputs["spec"]["tolerations"]}, flavor.urn
    assert HOLD_TAINT.key not in {t["key"] for t in gpu_tolerations()}
    assert HOLD_TAINT.key in {t["key"] for t in node_agent_tolerations()}

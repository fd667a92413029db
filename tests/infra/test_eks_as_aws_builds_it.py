"""The EKS stacks as AWS builds them (issue 11, item 3), on the rendered reference fleet: the
kubeconfig authenticates as the deploy role, the root device follows the image family, IMDS keeps
node credentials on the host, and the operator policy names the node groups EKS really tags."""

from __future__ import annotations

import json

import pytest

from gpufleet.infra.baseline_policies import NODE_GROUP_TAGS
from gpufleet.infra.image_family import ImageFamily

LT = "aws:ec2/launchTemplate:LaunchTemplate"


def gpu_templates(stack) -> list:
    return [t for t in stack.of_type(LT) if t.inputs.get("instanceType", "").startswith("p")]


def test_kubeconfig_authenticates_as_the_stacks_deploy_role(rendered_fleet):
    stack = rendered_fleet["inference"]
    [plane] = stack.of_type("eks:index:Cluster")
    assert plane.inputs["providerCredentialOpts"] == {"roleArn": stack.spec.deploy_role_arn}, plane.urn
    [provider] = [r for r in stack.resources if r.type == "pulumi:providers:kubernetes"]
    assert provider.inputs["kubeconfig"], provider.urn


@pytest.mark.parametrize(("stack_name", "family"), [
    ("inference", ImageFamily.AL2023_EKS_GPU),  # EKS picks the AL2023 accelerated image
    ("training", ImageFamily.UBUNTU_DLAMI),     # Slurm nodes boot the Ubuntu DLAMI
])
def test_root_volume_is_mapped_under_the_images_root_device(rendered_fleet, stack_name, family):
    templates = gpu_templates(rendered_fleet[stack_name])
    assert templates
    for template in templates:
        [mapping] = template.inputs["blockDeviceMappings"]
        assert mapping["deviceName"] == family.root_device, template.urn
        assert mapping["ebs"]["volumeSize"] == 200, template.urn


def test_every_launch_template_keeps_node_credentials_on_the_host(rendered_fleet):
    for stack in rendered_fleet.values():
        for template in stack.of_type(LT):
            metadata = template.inputs["metadataOptions"]
            assert metadata["httpTokens"] == "required", template.urn
            assert metadata["httpPutResponseHopLimit"] == 1, template.urn
            # Nothing on a node reads its tags from IMDS.
            assert metadata.get("instanceMetadataTags", "disabled") == "disabled", template.urn


def _operator_condition_values(stack, tag: str) -> set[str]:
    [policy] = [p for p in stack.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "baseline-operator-scale-drain"]
    values: set[str] = set()
    for statement in json.loads(policy.inputs["policy"])["Statement"]:
        for block in statement.get("Condition", {}).values():
            values.update(block.get(f"autoscaling:ResourceTag/{tag}", []))
    return values


def test_operator_conditions_match_the_tags_eks_puts_on_the_asgs(rendered_fleet):
    stack = rendered_fleet["inference"]
    groups = stack.exports["nodeGroups"]
    # The contract carries the tags of the Auto Scaling group EKS made for each node group.
    names = {g["asgTags"]["eks:nodegroup-name"] for g in groups}
    assert names == {g["name"] for g in groups} == {"serve-h100"}
    assert "eks:nodegroup-name" in NODE_GROUP_TAGS
    assert _operator_condition_values(stack, "eks:nodegroup-name") == names
    for node_group in stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert node_group.inputs.get("nodeGroupName"), f"{node_group.urn}: auto-named node group"

"""The reference stacks rendered through the real stacks/__main__.py under mocks: each on its own
account's provider, no duplicate URNs, encryption everywhere, exports that are the contract."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpufleet.automation.inventory import FleetInventory, check
from gpufleet.infra.asg_node_group import DESIRED_CAPACITY
from gpufleet.infra.contract import CONTRACT_VERSION, StackOutputs
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.offline.render import render_fleet, render_stack

STACKS = ("platform", "training", "inference")


def test_every_reference_stack_renders(rendered_fleet):
    assert sorted(rendered_fleet) == sorted(STACKS)
    for name, stack in rendered_fleet.items():
        assert stack.exports["role"] == stack.spec.role.value, name
        assert any(r.type.startswith("aws:") for r in stack.resources), name


@pytest.mark.parametrize("name", STACKS)
def test_every_resource_is_on_the_stacks_own_provider_and_account(rendered_fleet, name):
    stack = rendered_fleet[name]
    [provider] = stack.of_type("pulumi:providers:aws")
    # Providers receive structured settings JSON-encoded, as the engine passes them.
    assert json.loads(provider.inputs["allowedAccountIds"]) == [stack.spec.account_id], provider.urn
    roles = [r["roleArn"] for r in json.loads(provider.inputs["assumeRoles"])]
    assert roles == [stack.spec.deploy_role_arn], provider.urn
    assert provider.inputs["region"] == stack.spec.region
    for r in stack.resources:
        if r.type.startswith("aws:"):
            assert r.provider == provider.urn, f"{r.urn} is on {r.provider}"
        for value in json.dumps(r.outputs).split('"'):
            # The account field is 12 digits; AWS's own action ARNs (arn:aws:automate:<region>:ec2:recover) have none.
            account = value.split(":")[4] if value.startswith("arn:aws:") else ""
            if account.isdigit() and account != stack.spec.account_id:
                # Only the allowed cross-account paths (DESIGN.md): RAM shares, the operator/automation
                # roles' trust and policies, the release bucket and its key, the metrics collector's
                # remote write into the platform (its Helm release), and the consumers' pulls from
                # the platform's image cache (its ECR policies). tests/guardrails judges them.
                assert r.type.startswith(("aws:ram/", "aws:iam/role", "aws:s3/bucketPolicy", "aws:kms/key",
                                          "kubernetes:helm.sh/v3:Release", "aws:ecr/")), \
                    f"{r.urn} names another account: {value}"


@pytest.mark.parametrize("name", STACKS)
def test_urns_are_unique(rendered_fleet, name):
    urns = [r.urn for r in rendered_fleet[name].resources]
    assert len(urns) == len(set(urns))


def test_encryption_everywhere(rendered_fleet):
    for stack in rendered_fleet.values():
        keys = {k.outputs["arn"]: k for k in stack.of_type("aws:kms/key:Key")}
        for key in keys.values():
            assert key.inputs["enableKeyRotation"] is True, key.urn
        for lt in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
            for device in lt.inputs["blockDeviceMappings"]:
                assert device["ebs"]["encrypted"] == "true" and device["ebs"]["kmsKeyId"] in keys, lt.urn
        for group in stack.of_type("aws:cloudwatch/logGroup:LogGroup"):
            assert group.inputs["kmsKeyId"] in keys, group.urn
        for fs in stack.of_type("aws:fsx/lustreFileSystem:LustreFileSystem"):
            assert fs.inputs["kmsKeyId"] in keys, fs.urn
        for table in stack.of_type("aws:dynamodb/table:Table"):
            assert table.inputs["serverSideEncryption"]["kmsKeyArn"] in keys, table.urn
            assert table.inputs["pointInTimeRecovery"]["enabled"] is True, table.urn
        buckets = {b.id for b in stack.of_type("aws:s3/bucket:Bucket")}
        encrypted = {c.inputs["bucket"] for c in stack.of_type(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")}
        assert buckets <= encrypted, stack.spec.name


def test_desired_capacity_belongs_to_the_rebalancer(rendered_fleet):
    groups = [g for s in rendered_fleet.values() for g in s.of_type("aws:autoscaling/group:Group")]
    assert groups
    for g in groups:
        assert DESIRED_CAPACITY in g.ignore_changes, g.urn


def test_consumers_target_the_platforms_reservations_in_the_pools_az(rendered_fleet):
    pools = {p["name"]: p for p in rendered_fleet["platform"].exports["pools"]}
    for name in ("training", "inference"):
        stack = rendered_fleet[name]
        subnets = stack.exports["privateSubnetIds"]
        lts = {lt.parent.rsplit("::", 1)[1]: lt for lt in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
        asgs = {g.parent.rsplit("::", 1)[1]: g for g in stack.of_type("aws:autoscaling/group:Group")}
        # EKS clusters run their GPU groups as managed node groups (EKS makes the ASG).
        eks_groups = {g.parent.rsplit("::", 1)[1]: g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup")}
        for group in stack.spec.node_groups:
            pool = pools[group.pool]
            target = lts[group.name].inputs["capacityReservationSpecification"]["capacityReservationTarget"]
            assert target["capacityReservationId"] == pool["reservationId"], lts[group.name].urn
            if group.name in eks_groups:
                node_group = eks_groups[group.name]
                assert node_group.inputs["subnetIds"] == [subnets[pool["azId"]]], node_group.urn
                assert node_group.inputs["scalingConfig"]["desiredSize"] == group.initial_nodes
                continue
            assert asgs[group.name].inputs["vpcZoneIdentifiers"] == [subnets[pool["azId"]]], asgs[group.name].urn
            assert asgs[group.name].inputs["desiredCapacity"] == group.initial_nodes


@pytest.mark.parametrize("name", STACKS)
def test_exports_are_the_contract_and_round_trip_exactly(rendered_fleet, name):
    exports = rendered_fleet[name].exports
    outputs = StackOutputs.from_dict(exports, stack=name, source="(rendered)")
    assert outputs.to_dict() == exports
    assert outputs.version == CONTRACT_VERSION and outputs.role == name


def test_exports_make_an_inventory(rendered_fleet):
    inventory = FleetInventory(stacks={name: StackOutputs.from_dict(s.exports, stack=name, source="(rendered)")
                                       for name, s in rendered_fleet.items()})
    check(inventory)
    assert inventory.journal_table == "gpufleet-rebalance-journal"
    assert {p.name for p in inventory.pools} == {"h100-use1-az4", "h200-use1-az6"}
    asg_names = {g.outputs["name"] for s in rendered_fleet.values() for g in s.of_type("aws:autoscaling/group:Group")}
    asg_names |= {g.outputs["resources"][0]["autoscalingGroups"][0]["name"] for s in rendered_fleet.values()
                  for g in s.of_type("aws:eks/nodeGroup:NodeGroup") if g.name.endswith("-nodes")}
    assert {g.group.asg_name for g in inventory.node_groups} == asg_names
    assert {(g.stack, g.group.orchestrator, g.group.cluster) for g in inventory.node_groups} == {
        ("training", "slurm", "training"), ("inference", "eks", "gpufleet-inference")}
    assert sorted((g.group.name, g.group.initial_nodes) for g in inventory.node_groups) == [
        ("serve-h100", 2), ("train-h100", 5), ("train-h200", 4)]


def test_asg_tags_are_the_tags_on_the_real_auto_scaling_group(rendered_fleet):
    for name in ("training", "inference"):
        stack = rendered_fleet[name]
        asgs = {g.outputs["name"]: g for g in stack.of_type("aws:autoscaling/group:Group")}
        eks_groups = {g.outputs["resources"][0]["autoscalingGroups"][0]["name"]: g
                      for g in stack.of_type("aws:eks/nodeGroup:NodeGroup")}
        for group in stack.exports["nodeGroups"]:
            tags = group["asgTags"]
            if group["asgName"] in asgs:
                # An ASG the program makes: exactly its tags, with the stack's (default tags skip ASGs).
                asg = asgs[group["asgName"]]
                assert tags == {t["key"]: t["value"] for t in asg.inputs["tags"]}, asg.urn
                assert all(t["propagateAtLaunch"] for t in asg.inputs["tags"]), asg.urn
                assert (tags["gpufleet:stack"], tags["gpufleet:role"], tags["gpufleet:node-group"]) == (
                    name, name, group["name"])
            else:
                # The ASG EKS makes for a managed node group, tagged as AWS documents.
                node_group = eks_groups[group["asgName"]]
                cluster = node_group.inputs["clusterName"]
                assert tags == {"eks:cluster-name": cluster, "eks:nodegroup-name": node_group.outputs["nodeGroupName"],
                                "k8s.io/cluster-autoscaler/enabled": "true",
                                f"k8s.io/cluster-autoscaler/{cluster}": "owned",
                                f"kubernetes.io/cluster/{cluster}": "owned"}, node_group.urn


def test_rendering_again_serially_in_this_process_gives_the_same_graph(rendered_fleet, reference_specs):
    again = {r.spec.name: r for r in render_fleet(reference_specs, parallel=False)}
    for name, stack in rendered_fleet.items():
        assert [(r.urn, r.inputs) for r in again[name].resources] == [(r.urn, r.inputs) for r in stack.resources]
        assert again[name].exports == stack.exports


@pytest.mark.parametrize("parallel", [True, False])
def test_a_pool_missing_from_the_platform_outputs_is_a_config_error_naming_the_key(reference_specs, parallel):
    # The ledger catches this before rendering; under the real CLI only the program sees the outputs.
    specs = {s.name: s for s in reference_specs}
    training = specs["training"]
    broken = dataclasses.replace(training, node_groups=(
        dataclasses.replace(training.node_groups[0], pool="h100-elsewhere"), *training.node_groups[1:]))
    with pytest.raises(ConfigError) as caught:
        render_fleet([specs["platform"], broken, specs["inference"]], parallel=parallel)
    assert (caught.value.source, caught.value.key, caught.value.value) == (
        training.source, "gpufleet:nodeGroups[0].pool", "h100-elsewhere")
    # and the runtime is clean afterwards: the next render works
    assert render_fleet([specs["platform"]], parallel=parallel)[0].exports["role"] == "platform"



def test_every_gpu_auto_scaling_group_reports_the_metrics_the_missing_nodes_alarm_reads(rendered_fleet) -> None:
    # Regression: the Slurm groups once built their own ASG without enabled_metrics, so the
    # CloudWatch alarm comparing desired to in-service capacity had no data for them.
    groups = [r for stack in rendered_fleet.values() for r in stack.resources
              if r.type == "aws:autoscaling/group:Group"]
    assert groups, "the reference fleet has ASG-backed node groups"
    for group in groups:
        assert set(group.inputs.get("enabledMetrics") or []) >= {"GroupDesiredCapacity", "GroupInServiceInstances"}, group.urn
        assert "desiredCapacity" in group.ignore_changes, group.urn


def test_a_consumer_reads_the_platform_through_the_contract(rendered_fleet, reference_specs):
    training = next(s for s in reference_specs if s.name == "training")
    platform = dict(rendered_fleet["platform"].exports)
    platform["pools"] = [{k: v for k, v in p.items() if k != "instanceType"} for p in platform["pools"]]
    with pytest.raises(ConfigError) as caught:
        render_stack(training, stack_outputs={training.platform_stack: platform})
    assert caught.value.key == "stacks.platform.pools[0].instanceType"
    assert caught.value.problem == "missing stack output"

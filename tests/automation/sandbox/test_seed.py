"""Seeding builds what the stack files say, account by account, and isolates the accounts."""

from __future__ import annotations

import json

import boto3

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import load_inventory
from gpufleet.infra.model import Role
from gpufleet.infra.stackfile import discover_stacks, load_stack


def specs(sandbox):
    return {s.name: s for s in (load_stack(p) for p in discover_stacks(sandbox.stacks_dir))}


def test_inventory_matches_the_stack_files(sandbox):
    inv = load_inventory(sandbox.inventory)
    stacks = specs(sandbox)
    assert {name: (a.role, a.account_id, a.region) for name, a in inv.stacks.items()} == {
        name: (s.role.value, s.account_id, s.region) for name, s in stacks.items()}
    platform = stacks["platform"]
    assert [(p.name, p.instance_type, p.az_id, p.count, p.kind) for p in inv.pools] == [
        (p.name, p.instance_type, p.az_id, p.count, p.kind.value) for p in platform.pools]
    expected_groups = sorted((s.name, g.name, g.pool, g.instance_type, g.initial_nodes, g.min_nodes, g.max_nodes)
                             for s in stacks.values() if s.role is not Role.PLATFORM for g in s.node_groups)
    assert sorted((r.stack, r.group.name, r.group.pool, r.group.instance_type, r.group.initial_nodes,
                   r.group.min_nodes, r.group.max_nodes) for r in inv.node_groups) == expected_groups
    # Emulated nodes run no workload manager: orchestrator none.
    assert {r.group.orchestrator for r in inv.node_groups} == {"none"}
    assert {name: src.kind for name, src in inv.sources.items()} == {name: "sandbox" for name in stacks}
    for name, account in inv.stacks.items():
        if account.role == "platform":
            assert account.operator_role_arn is None
        else:
            assert account.operator_role_arn == f"arn:aws:iam::{stacks[name].account_id}:role/gpufleet-operator"


def test_each_account_holds_what_its_stack_declares(sandbox):
    inv = load_inventory(sandbox.inventory)
    stacks = specs(sandbox)
    access = AwsAccess(inv, operation="test")
    ec2 = access.client("platform", "ec2")
    reservations = {r["CapacityReservationId"]: r for r in ec2.describe_capacity_reservations()["CapacityReservations"]}
    for pool in inv.pools:
        live = reservations[pool.reservation_id]
        assert (live["InstanceType"], live["AvailabilityZoneId"], live["TotalInstanceCount"], live["InstanceMatchCriteria"]) == (
            pool.instance_type, pool.az_id, pool.count, "targeted")
    shares = access.client("platform", "ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]
    principals = access.client("platform", "ram").get_resource_share_associations(associationType="PRINCIPAL")["resourceShareAssociations"]
    shared = {}
    for share in shares:
        shared[share["name"]] = sorted(a["associatedEntity"] for a in principals if a["resourceShareArn"] == share["resourceShareArn"])
    platform = stacks["platform"]
    assert shared == {f"gpufleet-{p.name}": sorted(platform.consumer_accounts[r] for r in p.share_with) for p in platform.pools}
    assert access.client("platform", "dynamodb").describe_table(TableName=inv.journal_table)["Table"]["KeySchema"][0]["AttributeName"] == "pk"

    for ref in inv.node_groups:
        group = ref.group
        zones = {z["ZoneId"]: z["ZoneName"] for z in access.client(ref.stack, "ec2").describe_availability_zones()["AvailabilityZones"]}
        asg = access.client(ref.stack, "autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[group.asg_name])["AutoScalingGroups"][0]
        assert asg["DesiredCapacity"] == group.initial_nodes == len(asg["Instances"])
        assert {t["Key"]: t["Value"] for t in asg["Tags"]} == group.asg_tags
        assert {i["AvailabilityZone"] for i in asg["Instances"]} == {zones[inv.pool(group.pool).az_id]}
        template = access.client(ref.stack, "ec2").describe_launch_template_versions(
            LaunchTemplateId=asg["LaunchTemplate"]["LaunchTemplateId"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        target = template["CapacityReservationSpecification"]["CapacityReservationTarget"]["CapacityReservationId"]
        assert target == inv.pool(group.pool).reservation_id

    for name, account in inv.stacks.items():
        if account.operator_role_arn:
            role = access.client(name, "iam").get_role(RoleName="gpufleet-operator")["Role"]
            doc = role["AssumeRolePolicyDocument"]
            doc = json.loads(doc) if isinstance(doc, str) else doc
            statement = doc["Statement"][0]
            assert statement["Principal"]["AWS"] == f"arn:aws:iam::{inv.stacks['platform'].account_id}:root"
            assert statement["Condition"]["StringEquals"]["sts:ExternalId"] == account.external_id


def test_accounts_are_isolated(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = AwsAccess(inv, operation="test")
    names = {stack: sorted(a["AutoScalingGroupName"] for a in access.client(stack, "autoscaling")
                           .describe_auto_scaling_groups()["AutoScalingGroups"]) for stack in inv.stacks}
    assert names == {
        "platform": [],
        "training": ["gpufleet-training-train-h100", "gpufleet-training-train-h200"],
        "inference": ["gpufleet-inference-serve-h100"],
    }
    instances = {stack: sum(len(r["Instances"]) for r in access.client(stack, "ec2").describe_instances()["Reservations"])
                 for stack in inv.stacks}
    assert instances == {"platform": 0, "training": 9, "inference": 2}
    # The operator's own credentials are the platform account's; nothing else sees its table.
    assert boto3.client("sts").get_caller_identity()["Account"] == inv.stacks["platform"].account_id
    assert access.client("training", "dynamodb").list_tables()["TableNames"] == []

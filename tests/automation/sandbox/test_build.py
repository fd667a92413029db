"""The sandbox is the rendered program applied: its inventory is the program's exports read through
the contract, each account holds its stack's fleet, and nothing crosses accounts."""

from __future__ import annotations

import json

import boto3
import pytest

from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.sandbox.apply import ORDER, Applier, is_skipped
from gpufleet.automation.sandbox.outputs import ORCHESTRATOR_STAND_IN, STAND_IN_KEY
from gpufleet.infra.contract import StackOutputs
from tests.automation.sandbox.deployer import DeployerAccess
from tests.automation.sandbox.identity import Substitution


def test_the_inventory_is_the_programs_exports_with_the_emulators_ids(sandbox):
    doc = json.loads(sandbox.inventory.read_text())
    sub = Substitution(sandbox.ids)
    for stack in sandbox.rendered:
        name = stack.spec.name
        expected = StackOutputs.from_dict(sub(dict(stack.exports)), stack=name, source="render")
        assert StackOutputs.from_dict(doc["stacks"][name], stack=name, source="inventory") == expected
    text = sandbox.inventory.read_text()
    leftovers = [rendered for rendered in sandbox.ids if rendered in text]
    assert leftovers == []  # every id of an applied resource was replaced
    assert doc["version"] == 1 and set(doc["sources"]) == set(doc["stacks"])


def test_node_groups_keep_the_programs_orchestrator_and_the_sandbox_stands_in_once(sandbox):
    doc = json.loads(sandbox.inventory.read_text())
    declared = {g["name"]: g["orchestrator"] for out in doc["stacks"].values() for g in out["nodeGroups"]}
    assert declared == {"train-h100": "slurm", "train-h200": "slurm", "serve-h100": "eks"}
    assert doc[STAND_IN_KEY] == ORCHESTRATOR_STAND_IN == "none"
    assert {g.group.name: g.orchestrator for g in load_inventory(sandbox.inventory).node_groups} == {
        "train-h100": "none", "train-h200": "none", "serve-h100": "none"}


def test_every_rendered_type_is_applied_or_skipped_on_purpose(sandbox_server):
    types = {r.type for stack in sandbox_server.rendered for r in stack.resources}
    assert [t for t in sorted(types) if t not in ORDER and not is_skipped(t)] == []
    assert {"aws:iam/role:Role", "aws:autoscaling/group:Group", "aws:eks/nodeGroup:NodeGroup",
            "aws:ec2/capacityReservation:CapacityReservation"} <= types & set(ORDER)


def test_initial_sizes_launch_into_the_shared_reservations(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = DeployerAccess(sandbox)
    for ref in inv.node_groups:
        group = ref.group
        zones = {z["ZoneId"]: z["ZoneName"] for z in
                 access.client(ref.stack, "ec2").describe_availability_zones()["AvailabilityZones"]}
        asg = access.client(ref.stack, "autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[group.asg_name])["AutoScalingGroups"][0]
        assert asg["DesiredCapacity"] == group.initial_nodes == len(asg["Instances"])
        assert {i["AvailabilityZone"] for i in asg["Instances"]} == {zones[inv.pool(group.pool).az_id]}
    assert {r["name"]: (r["total"], r["used"]) for r in sandbox.reservations()} == {
        "h100-use1-az4": (8, 7), "h200-use1-az6": (4, 4)}


def test_accounts_are_isolated(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = DeployerAccess(sandbox)
    names = {stack: sorted(a["AutoScalingGroupName"] for a in access.client(stack, "autoscaling")
                           .describe_auto_scaling_groups()["AutoScalingGroups"]) for stack in inv.stacks}
    assert names == {stack: sorted(g.group.asg_name for g in inv.node_groups if g.stack == stack) for stack in inv.stacks}
    assert names["platform"] == [] and len(names["training"]) == 2 and names["inference"][0].startswith("eks-")
    instances = {stack: sum(len(r["Instances"]) for r in access.client(stack, "ec2").describe_instances()["Reservations"])
                 for stack in inv.stacks}
    assert instances == {"platform": 0, "training": 9, "inference": 2}
    # The operator's own credentials are the platform account's; nothing else sees its table.
    assert boto3.client("sts").get_caller_identity()["Account"] == inv.stacks["platform"].account_id
    assert access.client("training", "dynamodb").list_tables()["TableNames"] == []


def test_restore_brings_back_the_fleet_as_applied(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = DeployerAccess(sandbox)
    ref = inv.groups_of("training")[0]
    group = ref.group
    asg = access.client(ref.stack, "autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=group.asg_name, DesiredCapacity=2)
    asg.delete_tags(Tags=[{"ResourceId": group.asg_name, "ResourceType": "auto-scaling-group",
                           "Key": "gpufleet:node-group"}])
    sandbox.inventory.write_text("{}")
    sandbox.restore()
    inv = load_inventory(sandbox.inventory)
    access = DeployerAccess(sandbox)  # credentials issued after the snapshot are gone with it
    live = access.client(ref.stack, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group.asg_name])["AutoScalingGroups"][0]
    assert (live["DesiredCapacity"], len(live["Instances"])) == (group.initial_nodes, group.initial_nodes)
    assert {t["Key"] for t in live["Tags"]} >= {"gpufleet:node-group"}
    assert {r["name"]: r["used"] for r in sandbox.reservations()} == {"h100-use1-az4": 7, "h200-use1-az6": 4}


def test_an_input_or_type_the_sandbox_does_not_apply_stops_the_apply_naming_it(sandbox):
    from dataclasses import replace

    from gpufleet.automation.sandbox.api_params import UnappliedInput
    from gpufleet.automation.sandbox.apply import ApplyError
    from gpufleet.automation.sandbox.control import SANDBOX_CREDENTIALS
    from tests.automation.sandbox.identity import with_change

    applier = Applier(sandbox.endpoint, SANDBOX_CREDENTIALS)
    extra = with_change(sandbox.rendered, "training", "::train-h100-asg", lambda i: i.update(maxInstanceLifetime=86400))
    sandbox.client.reset(state=True)
    with pytest.raises(UnappliedInput, match=r"train-h100-asg: inputs maxInstanceLifetime are not applied"):
        applier.apply(extra)
    training = next(s for s in sandbox.rendered if s.spec.name == "training")
    unknown = replace(training.resources[0], type="aws:apigateway/restApi:RestApi", urn=training.resources[0].urn + "-x")
    other = [replace(s, resources=(*s.resources, unknown)) if s is training else s for s in sandbox.rendered]
    sandbox.client.reset(state=True)
    with pytest.raises(ApplyError, match=r"aws:apigateway/restApi:RestApi is neither applied nor listed as skipped"):
        applier.apply(other)

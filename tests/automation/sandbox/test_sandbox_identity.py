"""The fleet the automation is tested against is the fleet the program builds: every name, tag,
bound, policy document and id the automation relies on is the same in the render and in the
sandbox, and a difference seeded on either side is reported."""

from __future__ import annotations

import json

import pytest

from tests.automation.sandbox.identity import (
    deploy_clients,
    differences,
    operator_trust_differences,
    with_change,
)


def inventory(sandbox) -> dict:
    return json.loads(sandbox.inventory.read_text())


def test_the_sandbox_holds_exactly_what_the_program_declares(sandbox):
    clients = deploy_clients(sandbox.endpoint, sandbox.rendered)
    assert differences(sandbox.rendered, sandbox.ids, inventory(sandbox), clients) == []
    assert operator_trust_differences(sandbox.rendered, inventory(sandbox), clients) == []


def first_group(sandbox, stack: str) -> dict:
    return inventory(sandbox)["stacks"][stack]["nodeGroups"][0]


def add_tag(sandbox, clients):
    group = first_group(sandbox, "training")
    clients("training", "autoscaling").create_or_update_tags(Tags=[{
        "ResourceId": group["asgName"], "ResourceType": "auto-scaling-group", "Key": "gpufleet:nodeGroup",
        "Value": group["name"], "PropagateAtLaunch": True}])
    return "gpufleet:nodeGroup"


def resize(sandbox, clients):
    group = first_group(sandbox, "inference")
    clients("inference", "autoscaling").update_auto_scaling_group(AutoScalingGroupName=group["asgName"], MaxSize=3)
    return "MaxSize 3"


def other_external_id(sandbox, clients):
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "gpufleet-training-operator"}}}]}
    clients("training", "iam").update_assume_role_policy(RoleName="gpufleet-operator", PolicyDocument=json.dumps(trust))
    return "gpufleet-training-operator"


def extra_inline_policy(sandbox, clients):
    clients("inference", "iam").put_role_policy(RoleName="gpufleet-operator", PolicyName="hand-written",
                                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return "hand-written"


def extra_group(sandbox, clients):
    group = first_group(sandbox, "training")
    asg = clients("training", "autoscaling")
    live = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group["asgName"]])["AutoScalingGroups"][0]
    asg.create_auto_scaling_group(AutoScalingGroupName="gpufleet-training-train-h100", MinSize=0, MaxSize=1,
                                  DesiredCapacity=0, VPCZoneIdentifier=live["VPCZoneIdentifier"],
                                  LaunchTemplate={"LaunchTemplateId": live["LaunchTemplate"]["LaunchTemplateId"],
                                                  "Version": "1"})
    return "gpufleet-training-train-h100"


def extra_role(sandbox, clients):
    clients("inference", "iam").create_role(RoleName="gpufleet-operator-2", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))
    return "gpufleet-operator-2"


def other_table_key(sandbox, clients):
    ddb = clients("platform", "dynamodb")
    table = inventory(sandbox)["stacks"]["platform"]["journalTable"]
    ddb.update_table(TableName=table, DeletionProtectionEnabled=False)
    return "DeletionProtectionEnabled False"


@pytest.mark.parametrize("seed", [add_tag, resize, other_external_id, extra_inline_policy, extra_group, extra_role,
                                  other_table_key], ids=lambda f: f.__name__)
def test_a_difference_seeded_into_the_sandbox_is_reported(sandbox, seed):
    clients = deploy_clients(sandbox.endpoint, sandbox.rendered)
    marker = seed(sandbox, clients)
    found = (differences(sandbox.rendered, sandbox.ids, inventory(sandbox), clients)
             + operator_trust_differences(sandbox.rendered, inventory(sandbox), clients))
    assert found and any(marker in line for line in found), found


def set_key(path: list[str], value):
    def change(inputs: dict) -> None:
        node = inputs
        for key in path[:-1]:
            node = node[key] if not isinstance(node, list) else node[int(key)]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize(("stack", "urn", "path", "value", "marker"), [
    ("training", "train-h100-lt", ["instanceType"], "p4d.24xlarge", "instanceType"),
    ("training", "train-h100-lt", ["metadataOptions", "httpTokens"], "optional", "httpTokens"),
    ("inference", "serve-h100-lt", ["networkInterfaces", "3", "interfaceType"], "interface", "interfaceType"),
    ("training", "train-h200-asg", ["maxSize"], 9, "MaxSize"),
    ("inference", "baseline-operator", ["maxSessionDuration"], 7200, "MaxSessionDuration"),
    ("platform", "h100-use1-az4-odcr", ["instanceCount"], 9, "totalInstanceCount"),
    ("platform", "rebalance-journal-table", ["rangeKey"], "sort", "KeySchema"),
], ids=["lt-instance-type", "lt-imds", "lt-efa", "asg-bounds", "role", "reservation", "journal-keys"])
def test_a_difference_seeded_into_the_render_is_reported(sandbox, stack, urn, path, value, marker):
    changed = with_change(sandbox.rendered, stack, f"::{urn}", set_key(path, value))
    clients = deploy_clients(sandbox.endpoint, sandbox.rendered)
    found = differences(changed, sandbox.ids, inventory(sandbox), clients)
    assert found and all(marker in line for line in found), found

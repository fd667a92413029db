"""The operator policy's node-group conditions, as the sandbox's IAM holds it, match the tags on
the Auto Scaling groups the sandbox made for the EKS node groups (as EKS tags them)."""

from __future__ import annotations

import json
from urllib.parse import unquote

from tests.automation.sandbox.identity import deploy_clients

TAG = "eks:nodegroup-name"


def test_operator_conditions_name_the_eks_node_groups_asgs(sandbox):
    clients = deploy_clients(sandbox.endpoint, sandbox.rendered)
    stack = json.loads(sandbox.inventory.read_text())["stacks"]["inference"]
    iam = clients("inference", "iam")
    role = stack["operatorRoleArn"].rsplit("/", 1)[-1]
    wanted: set[str] = set()
    for policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        for statement in document["Statement"]:
            for block in statement.get("Condition", {}).values():
                wanted.update(block.get(f"autoscaling:ResourceTag/{TAG}", []))
    groups = clients("inference", "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[g["asgName"] for g in stack["nodeGroups"]])["AutoScalingGroups"]
    live = {t["Value"] for g in groups for t in g["Tags"] if t["Key"] == TAG}
    assert len(groups) == len(stack["nodeGroups"]) >= 1
    assert wanted == live == {g["name"] for g in stack["nodeGroups"]}

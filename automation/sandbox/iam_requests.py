"""What IAM authorizes for one AWS request: actions, resource ARNs and condition context.

AWS documents, per action, which IAM actions it needs, on which resource type and with which
condition keys (the Service Authorization Reference); this module says it for the calls the
automation makes, reading the resource's current tags from moto where a condition needs them:

- Auto Scaling ``SetDesiredCapacity``, ``UpdateAutoScalingGroup``, ``TerminateInstanceInAutoScalingGroup``
  (the group holding the instance): the group's ARN, ``autoscaling:ResourceTag/<key>`` of its tags;
- DynamoDB item and table calls: the table's ARN; ``TransactWriteItems`` needs the item action of each
  entry (PutItem, UpdateItem, DeleteItem, ConditionCheckItem) and ``TransactGetItems`` GetItem each;
- STS ``AssumeRole``: the role's ARN and ``sts:ExternalId``;
- EKS node group and cluster calls: their ARNs;
- everything else (the Describe and List calls): ``*``, as those actions support no resource-level
  permissions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpufleet.automation.sandbox.iam_eval import Request

ASG_SCOPED = {"SetDesiredCapacity", "UpdateAutoScalingGroup", "TerminateInstanceInAutoScalingGroup",
              "DeleteAutoScalingGroup", "CreateOrUpdateTags", "DeleteTags", "SuspendProcesses", "ResumeProcesses"}
TRANSACT_ITEM_ACTION = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                        "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def _group_of(account: str, region: str, params: Mapping[str, Any]) -> Any:
    from moto.autoscaling.models import autoscaling_backends

    backend = autoscaling_backends[account][region]
    name = params.get("AutoScalingGroupName")
    if name:
        return backend.autoscaling_groups.get(name)
    instance = params.get("InstanceId")
    for group in backend.autoscaling_groups.values():
        if any(state.instance.id == instance for state in group.instance_states):
            return group
    return None


def _autoscaling(action: str, account: str, region: str, params: Mapping[str, Any],
                 partition: str) -> list[Request]:
    iam_action = f"autoscaling:{action}"
    if action not in ASG_SCOPED:
        return [Request(iam_action)]
    group = _group_of(account, region, params)
    if group is None:  # AWS authorizes against the named (absent) group: no tags
        name = params.get("AutoScalingGroupName", "*")
        return [Request(iam_action, f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:"
                                    f"autoScalingGroupName/{name}")]
    tags = {f"autoscaling:ResourceTag/{t.get('Key', t.get('key'))}": str(t.get('Value', t.get('value'))) for t in group.tags}
    return [Request(iam_action, group.arn, tags)]


def _dynamodb(action: str, account: str, region: str, params: Mapping[str, Any], partition: str) -> list[Request]:
    def table(name: str) -> str:
        return f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"

    if action in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                out.append(Request(f"dynamodb:{TRANSACT_ITEM_ACTION[kind]}", table(body["TableName"])))
        return out
    if action in ("BatchWriteItem", "BatchGetItem"):
        item_action = "BatchWriteItem" if action == "BatchWriteItem" else "BatchGetItem"
        return [Request(f"dynamodb:{item_action}", table(name)) for name in params.get("RequestItems", {})]
    name = params.get("TableName")
    return [Request(f"dynamodb:{action}", table(name) if name else "*")]


def requests_for(service: str, action: str, account: str, region: str, params: Mapping[str, Any],
                 partition: str = "aws") -> list[Request]:
    """The authorizations one call needs (without the principal)."""
    if service == "autoscaling":
        return _autoscaling(action, account, region, params, partition)
    if service == "dynamodb":
        return _dynamodb(action, account, region, params, partition)
    if service == "sts" and action == "AssumeRole":
        context = {"sts:ExternalId": params["ExternalId"]} if params.get("ExternalId") else {}
        return [Request("sts:AssumeRole", params.get("RoleArn", "*"), context)]
    if service == "eks":
        cluster, group = params.get("name") or params.get("clusterName"), params.get("nodegroupName")
        if group:
            return [Request(f"eks:{action}", f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/{group}/*")]
        if cluster:
            return [Request(f"eks:{action}", f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}")]
    return [Request(f"{service}:{action}")]

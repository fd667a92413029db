"""What IAM authorizes for one AWS request: actions, resource ARNs and condition context.

AWS documents, per action, which IAM actions it needs, on which resource type and with which
condition keys (the Service Authorization Reference); this module says it for the calls the
automation makes, reading the resource's current tags from moto where a condition needs them:

- Auto Scaling ``SetDesiredCapacity``, ``UpdateAutoScalingGroup``, ``TerminateInstanceInAutoScalingGroup``
  (the group holding the instance): the group's ARN, ``autoscaling:ResourceTag/<key>`` of its tags;
- DynamoDB item and table calls: the table's ARN; ``TransactWriteItems`` needs the item action of each
  entry (PutItem, UpdateItem, DeleteItem, ConditionCheckItem) and ``TransactGetItems`` GetItem each;
  on a table encrypted with a customer managed key, DynamoDB uses the key on the caller's behalf
  ("How Amazon DynamoDB uses AWS KMS"): item calls need ``kms:Decrypt`` and DescribeTable
  ``kms:DescribeKey`` on that key, with ``kms:ViaService`` = ``dynamodb.<region>.amazonaws.com``;
- STS ``AssumeRole``: the role's ARN and ``sts:ExternalId``;
- EKS node group and cluster calls: their ARNs;
- EC2's interruptible allocation calls (lending a pool's slots): the source reservation's ARN;
- SSM ``SendCommand``: the document's ARN (AWS-owned documents have no account) and each instance's;
- everything else (the Describe and List calls): ``*``, as those actions support no resource-level
  permissions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpufleet.automation.sandbox.iam_eval import Request

ASG_SCOPED = {"SetDesiredCapacity", "UpdateAutoScalingGroup", "TerminateInstanceInAutoScalingGroup",
              "DeleteAutoScalingGroup", "CreateOrUpdateTags", "DeleteTags", "SuspendProcesses", "ResumeProcesses"}
LENDING = {"CreateInterruptibleCapacityReservationAllocation", "UpdateInterruptibleCapacityReservationAllocation"}
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


def _table_key(account: str, region: str, name: str) -> str | None:
    """The customer managed key a table is encrypted with (None: AWS owned or none)."""
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[account][region].tables.get(name)
    sse = getattr(table, "sse_specification", None) or {}
    key = sse.get("KMSMasterKeyId") if sse.get("Enabled") else None
    return str(key) if key and not str(key).endswith(":alias/aws/dynamodb") else None


def _dynamodb(action: str, account: str, region: str, params: Mapping[str, Any], partition: str) -> list[Request]:
    out = _dynamodb_actions(action, account, region, params, partition)
    via = {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}
    names = {r.resource.rsplit("/", 1)[-1] for r in out if ":table/" in r.resource}
    for name in sorted(names):
        key = _table_key(account, region, name)
        if key is None:
            continue
        if action == "DescribeTable":
            out.append(Request("kms:DescribeKey", key, via))
        elif action not in ("CreateTable", "DeleteTable", "UpdateTable", "ListTables"):
            out.append(Request("kms:Decrypt", key, via))
    return out


def _dynamodb_actions(action: str, account: str, region: str, params: Mapping[str, Any],
                      partition: str) -> list[Request]:
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
    if service == "ssm" and action == "SendCommand":
        document = params.get("DocumentName", "")
        owner = "" if document.startswith("AWS-") else account
        return [Request("ssm:SendCommand", f"arn:{partition}:ssm:{region}:{owner}:document/{document}"),
                *(Request("ssm:SendCommand", f"arn:{partition}:ec2:{region}:{account}:instance/{i}")
                  for i in params.get("InstanceIds", []))]
    if service == "ec2" and action in LENDING:
        # authorized against the source reservation, as ModifyCapacityReservation is (resource type
        # capacity-reservation); the Service Authorization Reference's entry for these is assumed
        return [Request(f"ec2:{action}", f"arn:{partition}:ec2:{region}:{account}:capacity-reservation/"
                                         f"{params.get('CapacityReservationId', '*')}")]
    if service == "eks":
        cluster, group = params.get("name") or params.get("clusterName"), params.get("nodegroupName")
        if group:
            return [Request(f"eks:{action}", f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/{group}/*")]
        if cluster:
            return [Request(f"eks:{action}", f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}")]
    return [Request(f"{service}:{action}")]

"""The create calls the AWS provider makes for each type the sandbox applies.

Each function takes the stack's ``Account``, one rendered resource and the fleet's ``IdMap``; it
rewrites the inputs that name other resources through the map, makes the calls, records the ids the
emulator gave, and returns the emulated id. ``consume`` first refuses any input the function does not
apply (a new input in the program stops the sandbox, naming it). ``HANDLERS`` lists them in an order
where every input names something applied before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gpufleet.automation.sandbox.accounts import Account
from gpufleet.automation.sandbox.api_params import UnappliedInput, to_params
from gpufleet.automation.sandbox.id_map import IdMap
from gpufleet.infra.eks_node_group import eks_asg_tags
from gpufleet.infra.offline.mocks import az_name as rendered_az_name
from gpufleet.infra.rendered import RenderedResource

EKS_ASG_PROPAGATED = True
"""EKS puts its tags on the group's instances as well (nodes carry eks:cluster-name, ...)."""
METRICS_GRANULARITY = "1Minute"
"""The only granularity Auto Scaling accepts (the provider's default)."""


def consume(resource: RenderedResource, applied: Iterable[str], provider_only: Iterable[str] = ()) -> None:
    """Refuse a resource with an input this module does not apply (say so rather than drop it)."""
    left = set(resource.inputs) - set(applied) - set(provider_only)
    if left:
        raise UnappliedInput(f"{resource.urn}: inputs {', '.join(sorted(left))} are not applied by the sandbox "
                             "(teach gpufleet/automation/sandbox/provider_calls.py)")


def iam_role(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "path", "assumeRolePolicy", "description", "maxSessionDuration", "tags"),
             provider_only=("forceDetachPolicies",))
    params: dict[str, Any] = {"RoleName": r.outputs.get("name") or r.inputs["name"],
                              "Path": r.inputs.get("path") or "/",
                              "AssumeRolePolicyDocument": ids.substitute(r.inputs["assumeRolePolicy"])}
    if r.inputs.get("description"):
        params["Description"] = r.inputs["description"]
    if r.inputs.get("maxSessionDuration"):
        params["MaxSessionDuration"] = int(r.inputs["maxSessionDuration"])
    if tags := account.tag_list(r.inputs.get("tags")):
        params["Tags"] = tags
    role = account.client("iam").create_role(**params)["Role"]
    ids.add(r.outputs.get("arn"), role["Arn"])
    ids.add(r.outputs.get("uniqueId"), role["RoleId"])
    ids.add(r.id, role["RoleName"])
    return role["Arn"]


def iam_role_policy(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("role", "policy", "name"))
    role, name = ids.substitute(r.inputs["role"]), r.outputs.get("name") or r.inputs["name"]
    account.client("iam").put_role_policy(RoleName=role, PolicyName=name,
                                          PolicyDocument=ids.substitute(r.inputs["policy"]))
    return f"{role}:{name}"


def iam_role_policy_attachment(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("role", "policyArn"))
    role, arn = ids.substitute(r.inputs["role"]), ids.substitute(r.inputs["policyArn"])
    account.client("iam").attach_role_policy(RoleName=role, PolicyArn=arn)
    return f"{role}/{arn}"


def iam_instance_profile(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "path", "role", "tags"))
    iam = account.client("iam")
    params: dict[str, Any] = {"InstanceProfileName": r.outputs.get("name") or r.inputs["name"],
                              "Path": r.inputs.get("path") or "/"}
    if tags := account.tag_list(r.inputs.get("tags")):
        params["Tags"] = tags
    profile = iam.create_instance_profile(**params)["InstanceProfile"]
    if r.inputs.get("role"):
        iam.add_role_to_instance_profile(InstanceProfileName=profile["InstanceProfileName"],
                                         RoleName=ids.substitute(r.inputs["role"]))
    ids.add(r.outputs.get("arn"), profile["Arn"])
    return profile["Arn"]


VPC_DNS_DEFAULTS = {"enableDnsSupport": True, "enableDnsHostnames": False}
"""What CreateVpc sets; the provider calls ModifyVpcAttribute only for a value that differs."""


def ec2_vpc(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("cidrBlock", "enableDnsSupport", "enableDnsHostnames", "tags"))
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=r.inputs["cidrBlock"],
                         TagSpecifications=account.tag_spec("vpc", r.inputs.get("tags")))["Vpc"]
    for key, default in VPC_DNS_DEFAULTS.items():
        if key in r.inputs and bool(r.inputs[key]) != default:
            ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], **{key[0].upper() + key[1:]: {"Value": bool(r.inputs[key])}})
    _ec2_ids(account, r, ids, "vpc", vpc["VpcId"])
    return vpc["VpcId"]


def ec2_subnet(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("vpcId", "cidrBlock", "availabilityZoneId", "mapPublicIpOnLaunch", "tags"))
    ec2 = account.client("ec2")
    subnet = ec2.create_subnet(VpcId=ids.substitute(r.inputs["vpcId"]), CidrBlock=r.inputs["cidrBlock"],
                               AvailabilityZoneId=r.inputs["availabilityZoneId"],
                               TagSpecifications=account.tag_spec("subnet", r.inputs.get("tags")))["Subnet"]
    if r.inputs.get("mapPublicIpOnLaunch"):
        ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    _ec2_ids(account, r, ids, "subnet", subnet["SubnetId"])
    return subnet["SubnetId"]


def ec2_placement_group(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "strategy", "partitionCount", "spreadLevel", "tags"))
    params: dict[str, Any] = {"GroupName": r.outputs.get("name") or r.inputs["name"],
                              "Strategy": r.inputs.get("strategy", "cluster"),
                              "TagSpecifications": account.tag_spec("placement-group", r.inputs.get("tags"))}
    if r.inputs.get("partitionCount"):
        params["PartitionCount"] = int(r.inputs["partitionCount"])
    if r.inputs.get("spreadLevel"):
        params["SpreadLevel"] = r.inputs["spreadLevel"]
    group = account.client("ec2").create_placement_group(**params)["PlacementGroup"]
    ids.add(r.outputs.get("placementGroupId"), group["GroupId"])
    return group["GroupName"]


def _ec2_ids(account: Account, r: RenderedResource, ids: IdMap, kind: str, real_id: str) -> None:
    ids.add(r.outputs.get("arn"), f"arn:aws:ec2:{account.region}:{account.account_id}:{kind}/{real_id}")
    ids.add(r.id, real_id)


def zone_name(account: Account, rendered: str) -> str:
    """The emulator's AZ name for the AZ ID whose rendered (mock invoke) name is ``rendered``."""
    for zone_id, name in account.zones.items():
        if rendered_az_name(account.region, account.account_id, zone_id) == rendered:
            return name
    raise ValueError(f"no AZ of {account.region} renders as {rendered} in account {account.account_id}")


def ec2_capacity_reservation(account: Account, r: RenderedResource, ids: IdMap) -> str:
    applied = ("instanceType", "instancePlatform", "availabilityZone", "instanceCount", "instanceMatchCriteria",
               "tenancy", "endDateType", "endDate", "ebsOptimized", "ephemeralStorage", "tags")
    consume(r, applied)
    ec2 = account.client("ec2")
    shape = ec2.meta.service_model.operation_model("CreateCapacityReservation").input_shape
    inputs = {k: v for k, v in r.inputs.items() if k != "tags"}
    inputs["availabilityZone"] = zone_name(account, r.inputs["availabilityZone"])
    params = to_params(inputs, shape, where=r.urn)
    params["TagSpecifications"] = account.tag_spec("capacity-reservation", r.inputs.get("tags"))
    reservation = ec2.create_capacity_reservation(**params)["CapacityReservation"]
    ids.add(r.outputs.get("arn"), reservation["CapacityReservationArn"])
    ids.add(r.id, reservation["CapacityReservationId"])
    return reservation["CapacityReservationId"]


def ram_resource_share(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "allowExternalPrincipals", "tags"))
    params: dict[str, Any] = {"name": r.inputs["name"],
                              "allowExternalPrincipals": bool(r.inputs.get("allowExternalPrincipals", True))}
    if tags := account.tags(r.inputs.get("tags")):
        params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    share = account.client("ram").create_resource_share(**params)["resourceShare"]
    ids.add(r.outputs.get("arn"), share["resourceShareArn"])
    return share["resourceShareArn"]


def ram_resource_association(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("resourceArn", "resourceShareArn"))
    share, arn = (ids.substitute(r.inputs[k]) for k in ("resourceShareArn", "resourceArn"))
    account.client("ram").associate_resource_share(resourceShareArn=share, resourceArns=[arn])
    return f"{share},{arn}"


def ram_principal_association(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("principal", "resourceShareArn"))
    share, principal = (ids.substitute(r.inputs[k]) for k in ("resourceShareArn", "principal"))
    account.client("ram").associate_resource_share(resourceShareArn=share, principals=[principal])
    return f"{share},{principal}"


def dynamodb_table(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "billingMode", "hashKey", "rangeKey", "attributes", "serverSideEncryption",
                 "pointInTimeRecovery", "deletionProtectionEnabled", "tags"))
    ddb = account.client("dynamodb")
    keys = [{"AttributeName": r.inputs["hashKey"], "KeyType": "HASH"}]
    if r.inputs.get("rangeKey"):
        keys.append({"AttributeName": r.inputs["rangeKey"], "KeyType": "RANGE"})
    params: dict[str, Any] = {
        "TableName": r.outputs.get("name") or r.inputs["name"], "KeySchema": keys,
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                 for a in r.inputs["attributes"]],
        "BillingMode": r.inputs.get("billingMode", "PROVISIONED"),
        "DeletionProtectionEnabled": bool(r.inputs.get("deletionProtectionEnabled", False)),
    }
    sse = r.inputs.get("serverSideEncryption") or {}
    if sse.get("enabled"):
        params["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
        if sse.get("kmsKeyArn"):
            params["SSESpecification"]["KMSMasterKeyId"] = ids.substitute(sse["kmsKeyArn"])
    if tags := account.tag_list(r.inputs.get("tags")):
        params["Tags"] = tags
    table = ddb.create_table(**params)["TableDescription"]
    if (r.inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        ddb.update_continuous_backups(TableName=table["TableName"],
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    ids.add(r.outputs.get("arn"), table["TableArn"])
    return table["TableArn"]


def amp_workspace(account: Account, r: RenderedResource, ids: IdMap) -> str:
    """An empty Managed Prometheus workspace (the healer, the scheduler and usage query it; no
    collector writes to it in the sandbox). Its rule namespaces and Alertmanager stay skipped."""
    consume(r, ("alias", "kmsKeyArn", "loggingConfiguration", "tags"))
    amp = account.client("amp")
    params: dict[str, Any] = {"alias": r.inputs["alias"]}
    if r.inputs.get("kmsKeyArn"):
        params["kmsKeyArn"] = ids.substitute(r.inputs["kmsKeyArn"])
    if tags := account.tags(r.inputs.get("tags")):
        params["tags"] = tags
    made = amp.create_workspace(**params)
    if log_group := (r.inputs.get("loggingConfiguration") or {}).get("logGroupArn"):
        amp.create_logging_configuration(workspaceId=made["workspaceId"], logGroupArn=ids.substitute(log_group))
    ids.add(r.outputs.get("id"), made["workspaceId"])
    ids.add(r.outputs.get("arn"), made["arn"])
    return made["arn"]


def ec2_launch_template(account: Account, r: RenderedResource, ids: IdMap) -> str:
    own = ("name", "tags", "description")
    provider_only = ("updateDefaultVersion", "defaultVersion")
    ec2 = account.client("ec2")
    shape = ec2.meta.service_model.operation_model("CreateLaunchTemplate").input_shape
    inputs = {k: v for k, v in r.inputs.items() if k not in own + provider_only}
    data = to_params(ids.substitute(inputs), shape.members["LaunchTemplateData"], where=r.urn,
                     renames={"securityGroups": "Groups", "vpcSecurityGroupIds": "SecurityGroupIds"})
    params: dict[str, Any] = {"LaunchTemplateName": r.outputs.get("name") or r.inputs["name"],
                              "LaunchTemplateData": data}
    if r.inputs.get("description"):
        params["VersionDescription"] = r.inputs["description"]
    if spec := account.tag_spec("launch-template", r.inputs.get("tags")):
        params["TagSpecifications"] = spec
    template = ec2.create_launch_template(**params)["LaunchTemplate"]
    real = template["LaunchTemplateId"]
    _ec2_ids(account, r, ids, "launch-template", real)
    return real


def autoscaling_group(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("name", "minSize", "maxSize", "desiredCapacity", "vpcZoneIdentifiers", "launchTemplate",
                 "healthCheckType", "healthCheckGracePeriod", "enabledMetrics", "tags"),
             provider_only=("waitForCapacityTimeout", "forceDelete"))
    name = r.outputs.get("name") or r.inputs["name"]
    tags = [{"Key": t["key"], "Value": str(t["value"]), "PropagateAtLaunch": bool(t.get("propagateAtLaunch"))}
            for t in r.inputs.get("tags") or ()]
    params: dict[str, Any] = {
        "AutoScalingGroupName": name, "MinSize": int(r.inputs["minSize"]), "MaxSize": int(r.inputs["maxSize"]),
        "VPCZoneIdentifier": ",".join(ids.substitute(list(r.inputs.get("vpcZoneIdentifiers") or ()))),
        "LaunchTemplate": _template_ref(ids, r.inputs["launchTemplate"]), "Tags": tags,
    }
    if r.inputs.get("desiredCapacity") is not None:
        params["DesiredCapacity"] = int(r.inputs["desiredCapacity"])
    if r.inputs.get("healthCheckType"):
        params["HealthCheckType"] = r.inputs["healthCheckType"]
    if r.inputs.get("healthCheckGracePeriod") is not None:
        params["HealthCheckGracePeriod"] = int(r.inputs["healthCheckGracePeriod"])
    _create_group(account, params, r.inputs.get("enabledMetrics"))
    return name


def eks_node_group(account: Account, r: RenderedResource, ids: IdMap) -> str:
    consume(r, ("clusterName", "nodeGroupName", "scalingConfig", "subnetIds", "launchTemplate", "tags",
                 "amiType", "capacityType", "instanceTypes", "labels", "taints", "updateConfig", "nodeRoleArn"))
    cluster, group = r.inputs["clusterName"], r.outputs.get("nodeGroupName") or r.inputs["nodeGroupName"]
    name = f"eks-{group}-{uuid.uuid4()}"
    scaling = r.inputs["scalingConfig"]
    tags = eks_asg_tags(cluster, group)  # the program's own statement of what EKS puts there
    params: dict[str, Any] = {
        "AutoScalingGroupName": name, "MinSize": int(scaling["minSize"]), "MaxSize": int(scaling["maxSize"]),
        "DesiredCapacity": int(scaling["desiredSize"]),
        "VPCZoneIdentifier": ",".join(ids.substitute(list(r.inputs["subnetIds"]))),
        "LaunchTemplate": _template_ref(ids, r.inputs["launchTemplate"]),
        "Tags": [{"Key": k, "Value": v, "PropagateAtLaunch": EKS_ASG_PROPAGATED} for k, v in tags.items()],
    }
    _create_group(account, params, None)
    ids.add(eks_asg_name(r), name)
    return name


def _template_ref(ids: IdMap, ref: Mapping[str, Any]) -> dict[str, str]:
    out = {"Version": str(ref.get("version") or "$Default")}
    if ref.get("id"):
        out["LaunchTemplateId"] = ids.substitute(ref["id"])
    else:
        out["LaunchTemplateName"] = ref["name"]
    return out


def _create_group(account: Account, params: dict[str, Any], metrics: Sequence[str] | None) -> None:
    asg = account.client("autoscaling")
    asg.create_auto_scaling_group(**params)
    if metrics:
        asg.enable_metrics_collection(AutoScalingGroupName=params["AutoScalingGroupName"], Metrics=list(metrics),
                                      Granularity=METRICS_GRANULARITY)


def eks_asg_name(resource: RenderedResource) -> str | None:
    """The Auto Scaling group name in a rendered node group's outputs (a mock of EKS's answer)."""
    for item in resource.outputs.get("resources") or ():
        for group in item.get("autoscalingGroups") or ():
            if group.get("name"):
                return str(group["name"])
    return None


HANDLERS = {
    # first: its id is the emulator's own (not derivable from the render), and role policies name it
    "aws:amp/workspace:Workspace": amp_workspace,
    "aws:iam/role:Role": iam_role,
    "aws:iam/rolePolicy:RolePolicy": iam_role_policy,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": iam_role_policy_attachment,
    "aws:iam/instanceProfile:InstanceProfile": iam_instance_profile,
    "aws:ec2/vpc:Vpc": ec2_vpc,
    "aws:ec2/subnet:Subnet": ec2_subnet,
    "aws:ec2/placementGroup:PlacementGroup": ec2_placement_group,
    "aws:ec2/capacityReservation:CapacityReservation": ec2_capacity_reservation,
    "aws:ram/resourceShare:ResourceShare": ram_resource_share,
    "aws:ram/resourceAssociation:ResourceAssociation": ram_resource_association,
    "aws:ram/principalAssociation:PrincipalAssociation": ram_principal_association,
    "aws:dynamodb/table:Table": dynamodb_table,
    "aws:ec2/launchTemplate:LaunchTemplate": ec2_launch_template,
    "aws:autoscaling/group:Group": autoscaling_group,
    "aws:eks/nodeGroup:NodeGroup": eks_node_group,
}
"""Type token -> its create calls, in an order where every input names something applied before it."""

SERVICE_OF = {"iam": "iam", "ec2": "ec2", "ram": "ram", "dynamodb": "dynamodb", "autoscaling": "autoscaling",
              "eks": "autoscaling", "amp": "amp"}
"""The client each module's types need (an EKS node group: the Auto Scaling group EKS makes)."""

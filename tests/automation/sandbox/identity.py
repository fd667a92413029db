"""What the sandbox holds, compared with what the rendered program declares, field by field.

``differences`` reads every account through the AWS APIs (as its stack's deploy role) and reports
each name, tag, bound, policy document and id that the automation relies on and that differs from
the render (rendered ids mapped through the sandbox's ids.json), plus anything of those kinds the
sandbox holds that the render does not declare. An empty list: the fleet the automation is tested
against is the fleet the program builds.

The launch-template and reservation comparison walks the *rendered* inputs and looks each one up in
what EC2 describes (camelCase -> PascalCase, "true" -> True, tag maps -> Key/Value lists), the
reverse of what the sandbox does to apply them, so a conversion the sandbox gets wrong shows here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import boto3

from gpufleet.automation.rebalance.journal import TABLE_SCHEMA
from gpufleet.infra.offline.mocks import az_name as rendered_az_name
from gpufleet.infra.rendered import RenderedResource, RenderedStack

RENAMES = {"securityGroups": "Groups", "vpcSecurityGroupIds": "SecurityGroupIds"}
NOT_DESCRIBED = {"updateDefaultVersion", "tags", "name", "description"}
"""Launch-template inputs EC2 does not return in LaunchTemplateData (the provider's own, or the
template's own tags and name, compared separately)."""
EKS_ASG = re.compile(r"^eks-(?P<group>.+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

Clients = Callable[[str, str], Any]


_BASE = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
"""One botocore session for every client here: it builds each client class once."""


def deploy_clients(endpoint: str, rendered: Sequence[RenderedStack]) -> Clients:
    """Clients per (stack, service) in each stack's account, as its deploy role (like `pulumi up`)."""
    credentials: dict[str, dict[str, str]] = {}
    cache: dict[tuple[str, str], Any] = {}
    sts = _BASE.client("sts", endpoint_url=endpoint)
    for stack in rendered:
        provider = next(r for r in stack.resources if r.type == "pulumi:providers:aws")
        role = json.loads(provider.inputs["assumeRoles"])[0]
        creds = sts.assume_role(RoleArn=role["roleArn"], RoleSessionName="identity-test")["Credentials"]
        credentials[stack.spec.name] = {
            "aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"], "region_name": provider.inputs["region"]}

    def client(stack: str, service: str) -> Any:
        if (stack, service) not in cache:
            cache[(stack, service)] = _BASE.client(service, endpoint_url=endpoint, **credentials[stack])
        return cache[(stack, service)]

    return client


class Substitution:
    """ids.json applied to rendered values (longest id first, like the sandbox's IdMap)."""

    def __init__(self, ids: Mapping[str, str]) -> None:
        self.ids = dict(ids)
        ordered = sorted(self.ids, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(k) for k in ordered)) if ordered else None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.pattern.sub(lambda m: self.ids[m.group(0)], value) if self.pattern else value
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def compare_rendered(rendered: Any, described: Any, where: str, out: list[str]) -> None:
    """Every rendered input present, equal, in what AWS describes (rendered -> AWS spelling)."""
    if isinstance(rendered, Mapping):
        if isinstance(described, list) and all(isinstance(t, Mapping) and "Key" in t for t in described):
            got = {t["Key"]: t.get("Value") for t in described}
            if got != {str(k): str(v) for k, v in rendered.items()}:
                out.append(f"{where}: tags {got} != rendered {dict(rendered)}")
            return
        if not isinstance(described, Mapping):
            out.append(f"{where}: rendered {rendered!r}, described {described!r}")
            return
        for key, value in rendered.items():
            if value is None:
                continue
            name = RENAMES.get(key, key[:1].upper() + key[1:])
            if name not in described:
                out.append(f"{where}.{key}: rendered {value!r}, not in what AWS describes")
                continue
            compare_rendered(value, described[name], f"{where}.{key}", out)
        return
    if isinstance(rendered, list):
        if not isinstance(described, list) or len(described) != len(rendered):
            out.append(f"{where}: rendered {len(rendered)} items, described {described!r}")
            return
        for i, (a, b) in enumerate(zip(rendered, described, strict=True)):
            compare_rendered(a, b, f"{where}[{i}]", out)
        return
    if isinstance(described, bool) and rendered in ("true", "false"):
        rendered = rendered == "true"
    if isinstance(described, int | float) and not isinstance(described, bool) and isinstance(rendered, str):
        rendered = float(rendered)
    if rendered != described:
        out.append(f"{where}: rendered {rendered!r}, described {described!r}")


def _doc(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _of(stack: RenderedStack, type_token: str) -> list[RenderedResource]:
    return stack.of_type(type_token)


def _eks_asg(resource: RenderedResource) -> str:
    return resource.outputs["resources"][0]["autoscalingGroups"][0]["name"]


def differences(rendered: Sequence[RenderedStack], ids: Mapping[str, str], inventory: Mapping[str, Any],
                clients: Clients) -> list[str]:
    sub = Substitution(ids)
    out: list[str] = []
    stacks = inventory["stacks"]
    for stack in rendered:
        name = stack.spec.name
        exported = stacks[name]
        _iam(stack, sub, clients, out)
        _network(stack, sub, clients, exported, out)
        _launch_templates(stack, sub, clients, out)
        _groups(stack, sub, clients, exported, out)
        _capacity(stack, sub, clients, exported, out)
        _journal(stack, sub, clients, exported, out)
    return out


def _iam(stack: RenderedStack, sub: Substitution, clients: Clients, out: list[str]) -> None:
    name, iam = stack.spec.name, clients(stack.spec.name, "iam")
    roles = {r.outputs["name"]: r for r in _of(stack, "aws:iam/role:Role")}
    live = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    if live != set(roles):
        out.append(f"{name}: IAM roles {sorted(live)} != rendered {sorted(roles)}")
    inline: dict[str, dict[str, Any]] = {}
    for policy in _of(stack, "aws:iam/rolePolicy:RolePolicy"):
        inline.setdefault(sub(policy.inputs["role"]), {})[policy.outputs["name"]] = _doc(sub(policy.inputs["policy"]))
    attached: dict[str, set[str]] = {}
    for attachment in _of(stack, "aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        attached.setdefault(sub(attachment.inputs["role"]), set()).add(attachment.inputs["policyArn"])
    for role_name, r in roles.items():
        if role_name not in live:
            continue
        role = iam.get_role(RoleName=role_name)["Role"]
        where = f"{name}: role {role_name}"
        if role["Arn"] != sub(r.outputs["arn"]):
            out.append(f"{where}: ARN {role['Arn']} != rendered {sub(r.outputs['arn'])}")
        if role["Path"] != (r.inputs.get("path") or "/"):
            out.append(f"{where}: path {role['Path']}")
        if _doc(role["AssumeRolePolicyDocument"]) != _doc(sub(r.inputs["assumeRolePolicy"])):
            out.append(f"{where}: trust policy {role['AssumeRolePolicyDocument']} != rendered {r.inputs['assumeRolePolicy']}")
        for key, field in (("description", "Description"), ("maxSessionDuration", "MaxSessionDuration")):
            if key in r.inputs and role.get(field) != r.inputs[key]:
                out.append(f"{where}: {field} {role.get(field)!r} != rendered {r.inputs[key]!r}")
        names = set(iam.list_role_policies(RoleName=role_name)["PolicyNames"])
        if names != set(inline.get(role_name, {})):
            out.append(f"{where}: inline policies {sorted(names)} != rendered {sorted(inline.get(role_name, {}))}")
        for policy_name in names & set(inline.get(role_name, {})):
            doc = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
            if _doc(doc) != inline[role_name][policy_name]:
                out.append(f"{where}: inline policy {policy_name} {doc} != rendered {inline[role_name][policy_name]}")
        arns = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]}
        if arns != attached.get(role_name, set()):
            out.append(f"{where}: managed policies {sorted(arns)} != rendered {sorted(attached.get(role_name, set()))}")


def _network(stack: RenderedStack, sub: Substitution, clients: Clients, exported: Mapping[str, Any],
             out: list[str]) -> None:
    name, ec2 = stack.spec.name, clients(stack.spec.name, "ec2")
    for r in _of(stack, "aws:ec2/vpc:Vpc"):
        for key in ("enableDnsSupport", "enableDnsHostnames"):
            field = key[:1].upper() + key[1:]
            got = ec2.describe_vpc_attribute(VpcId=sub(r.id), Attribute=key)[field]["Value"]
            if got != r.inputs.get(key, key == "enableDnsSupport"):
                out.append(f"{name}: VPC {r.name}: {key} {got}, rendered {r.inputs.get(key)}")
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets()["Subnets"]}
    for r in _of(stack, "aws:ec2/subnet:Subnet"):
        live = subnets.get(sub(r.id))
        if live is None:
            out.append(f"{name}: subnet {r.name} ({sub(r.id)}) not in the sandbox")
        elif (live["CidrBlock"], live["AvailabilityZoneId"], live["VpcId"]) != (
                r.inputs["cidrBlock"], r.inputs["availabilityZoneId"], sub(r.inputs["vpcId"])):
            out.append(f"{name}: subnet {r.name}: {live['CidrBlock']} in {live['AvailabilityZoneId']} of {live['VpcId']}")
    for az_id, subnet_id in (exported.get("privateSubnetIds") or {}).items():
        if subnets.get(subnet_id, {}).get("AvailabilityZoneId") != az_id:
            out.append(f"{name}: exported privateSubnetIds.{az_id} = {subnet_id} is no subnet in {az_id}")


def _launch_templates(stack: RenderedStack, sub: Substitution, clients: Clients, out: list[str]) -> None:
    name, ec2 = stack.spec.name, clients(stack.spec.name, "ec2")
    rendered = {r.outputs["name"]: r for r in _of(stack, "aws:ec2/launchTemplate:LaunchTemplate")}
    live = {t["LaunchTemplateName"]: t for t in ec2.describe_launch_templates()["LaunchTemplates"]}
    if set(live) != set(rendered):
        out.append(f"{name}: launch templates {sorted(live)} != rendered {sorted(rendered)}")
    for template_name, r in rendered.items():
        if template_name not in live:
            continue
        if live[template_name]["LaunchTemplateId"] != sub(r.id):
            out.append(f"{name}: launch template {template_name} is {live[template_name]['LaunchTemplateId']}, "
                       f"rendered {sub(r.id)}")
        data = ec2.describe_launch_template_versions(LaunchTemplateId=live[template_name]["LaunchTemplateId"],
                                                     Versions=["1"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        # moto copies the template's own tags into its data as a launch-template tag specification.
        data["TagSpecifications"] = [t for t in data.get("TagSpecifications", [])
                                     if t["ResourceType"] != "launch-template"] or None
        inputs = {k: v for k, v in sub(r.inputs).items() if k not in NOT_DESCRIBED}
        compare_rendered(inputs, data, f"{name}: launch template {template_name}", out)
        tags = {t["Key"]: t["Value"] for t in live[template_name].get("Tags") or ()}
        if any(tags.get(k) != v for k, v in (r.inputs.get("tags") or {}).items()):
            out.append(f"{name}: launch template {template_name} tags {tags} lack rendered {r.inputs['tags']}")


def _groups(stack: RenderedStack, sub: Substitution, clients: Clients, exported: Mapping[str, Any],
            out: list[str]) -> None:
    name, asg = stack.spec.name, clients(stack.spec.name, "autoscaling")
    live = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
    expected: dict[str, dict[str, Any]] = {}
    for r in _of(stack, "aws:autoscaling/group:Group"):
        expected[r.outputs["name"]] = {
            "MinSize": r.inputs["minSize"], "MaxSize": r.inputs["maxSize"], "DesiredCapacity": r.inputs["desiredCapacity"],
            "VPCZoneIdentifier": ",".join(sub(r.inputs["vpcZoneIdentifiers"])),
            "LaunchTemplate": (sub(r.inputs["launchTemplate"]["id"]), str(r.inputs["launchTemplate"]["version"])),
            "HealthCheckType": r.inputs.get("healthCheckType"), "HealthCheckGracePeriod": r.inputs.get("healthCheckGracePeriod"),
            "EnabledMetrics": sorted(r.inputs.get("enabledMetrics") or []),
            "Tags": {t["key"]: (t["value"], bool(t["propagateAtLaunch"])) for t in r.inputs.get("tags") or ()}}
    exported_groups = {g["asgName"]: g for g in exported.get("nodeGroups") or ()}
    rendered_exports = {g["asgName"] for g in stack.exports.get("nodeGroups") or ()}
    for r in _of(stack, "aws:eks/nodeGroup:NodeGroup"):
        rendered_name = _eks_asg(r)
        if rendered_name not in rendered_exports:
            continue  # the system node group: not applied (automation/sandbox/apply.py)
        real = sub(rendered_name)
        match = EKS_ASG.match(real)
        if match is None or match.group("group") != r.outputs["nodeGroupName"] or real == rendered_name:
            out.append(f"{name}: the Auto Scaling group of EKS node group {r.outputs['nodeGroupName']} is {real}, "
                       "not eks-<node group name>-<a uuid of its own>")
        cluster, scaling = r.inputs["clusterName"], r.inputs["scalingConfig"]
        eks_tags = {"eks:cluster-name": cluster, "eks:nodegroup-name": r.outputs["nodeGroupName"],
                    "k8s.io/cluster-autoscaler/enabled": "true", f"k8s.io/cluster-autoscaler/{cluster}": "owned",
                    f"kubernetes.io/cluster/{cluster}": "owned"}
        expected[real] = {
            "MinSize": scaling["minSize"], "MaxSize": scaling["maxSize"], "DesiredCapacity": scaling["desiredSize"],
            "VPCZoneIdentifier": ",".join(sub(r.inputs["subnetIds"])),
            "LaunchTemplate": (sub(r.inputs["launchTemplate"]["id"]), str(r.inputs["launchTemplate"]["version"])),
            "Tags": {k: (v, True) for k, v in eks_tags.items()}}
    if set(live) != set(expected):
        out.append(f"{name}: Auto Scaling groups {sorted(live)} != rendered {sorted(expected)}")
    for group_name, want in expected.items():
        group = live.get(group_name)
        if group is None:
            continue
        got = {"MinSize": group["MinSize"], "MaxSize": group["MaxSize"], "DesiredCapacity": group["DesiredCapacity"],
               "VPCZoneIdentifier": group["VPCZoneIdentifier"],
               "LaunchTemplate": (group["LaunchTemplate"]["LaunchTemplateId"], group["LaunchTemplate"]["Version"]),
               "HealthCheckType": group.get("HealthCheckType"), "HealthCheckGracePeriod": group.get("HealthCheckGracePeriod"),
               "EnabledMetrics": sorted(m["Metric"] for m in group.get("EnabledMetrics") or []),
               "Tags": {t["Key"]: (t["Value"], bool(t["PropagateAtLaunch"])) for t in group.get("Tags") or ()}}
        for key, value in want.items():
            if got[key] != value:
                out.append(f"{name}: Auto Scaling group {group_name}: {key} {got[key]!r} != rendered {value!r}")
        node_group = exported_groups.get(group_name)
        if node_group is None:
            out.append(f"{name}: Auto Scaling group {group_name} is in no exported node group")
        elif node_group.get("asgTags") != {k: v for k, (v, _) in got["Tags"].items()}:
            out.append(f"{name}: node group {node_group['name']} exports asgTags {node_group.get('asgTags')}, "
                       f"the group has {got['Tags']}")


def _capacity(stack: RenderedStack, sub: Substitution, clients: Clients, exported: Mapping[str, Any],
              out: list[str]) -> None:
    name = stack.spec.name
    rendered = _of(stack, "aws:ec2/capacityReservation:CapacityReservation")
    if not rendered:
        return
    ec2, ram = clients(name, "ec2"), clients(name, "ram")
    live = {r["CapacityReservationId"]: r for r in ec2.describe_capacity_reservations()["CapacityReservations"]}
    if set(live) != {sub(r.id) for r in rendered}:
        out.append(f"{name}: capacity reservations {sorted(live)} != rendered {sorted(sub(r.id) for r in rendered)}")
    for r in rendered:
        got = live.get(sub(r.id))
        if got is None:
            continue
        inputs = {k: v for k, v in r.inputs.items() if k not in ("availabilityZone", "tags")}
        # instanceCount is described as TotalInstanceCount.
        inputs["totalInstanceCount"] = inputs.pop("instanceCount")
        compare_rendered(inputs, got, f"{name}: reservation {r.name}", out)
        zone_id = next(z for z in ("use1-az1", "use1-az2", "use1-az3", "use1-az4", "use1-az5", "use1-az6")
                       if rendered_az_name(stack.spec.region, stack.spec.account_id, z) == r.inputs["availabilityZone"])
        if got["AvailabilityZoneId"] != zone_id:
            out.append(f"{name}: reservation {r.name} is in {got['AvailabilityZoneId']}, rendered {zone_id}")
        tags = {t["Key"]: t["Value"] for t in got.get("Tags") or ()}
        if any(tags.get(k) != v for k, v in r.inputs.get("tags", {}).items()):
            out.append(f"{name}: reservation {r.name} tags {tags} lack rendered {r.inputs['tags']}")
    for pool in exported.get("pools") or ():
        if pool.get("reservationId") and pool["reservationId"] not in live:
            out.append(f"{name}: pool {pool['name']} exports reservation {pool['reservationId']}, which is not there")
    shares = {s["resourceShareArn"]: s for s in ram.get_resource_shares(resourceOwner="SELF")["resourceShares"]}
    for r in _of(stack, "aws:ram/resourceShare:ResourceShare"):
        share = shares.get(sub(r.outputs["arn"]))
        if share is None or (share["name"], share["allowExternalPrincipals"]) != (
                r.inputs["name"], r.inputs["allowExternalPrincipals"]):
            out.append(f"{name}: resource share {r.inputs['name']}: {share}")
    for kind, type_token, key in (("RESOURCE", "aws:ram/resourceAssociation:ResourceAssociation", "resourceArn"),
                                  ("PRINCIPAL", "aws:ram/principalAssociation:PrincipalAssociation", "principal")):
        got = {(a["resourceShareArn"], a["associatedEntity"])
               for a in ram.get_resource_share_associations(associationType=kind)["resourceShareAssociations"]}
        want = {(sub(r.inputs["resourceShareArn"]), sub(r.inputs[key])) for r in _of(stack, type_token)}
        if got != want:
            out.append(f"{name}: RAM {kind.lower()} associations {sorted(got)} != rendered {sorted(want)}")


def _journal(stack: RenderedStack, sub: Substitution, clients: Clients, exported: Mapping[str, Any],
             out: list[str]) -> None:
    name = stack.spec.name
    for r in _of(stack, "aws:dynamodb/table:Table"):
        ddb = clients(name, "dynamodb")
        table = ddb.describe_table(TableName=r.outputs["name"])["Table"]
        keys = [{"AttributeName": r.inputs["hashKey"], "KeyType": "HASH"}]
        if r.inputs.get("rangeKey"):
            keys.append({"AttributeName": r.inputs["rangeKey"], "KeyType": "RANGE"})
        attributes = sorted((a["name"], a["type"]) for a in r.inputs["attributes"])
        got = {"KeySchema": table["KeySchema"],
               "AttributeDefinitions": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
               "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode"),
               "DeletionProtectionEnabled": table.get("DeletionProtectionEnabled"),
               "SSE": (table.get("SSEDescription", {}).get("Status"), table.get("SSEDescription", {}).get("KMSMasterKeyArn")),
               "PITR": ddb.describe_continuous_backups(TableName=table["TableName"])["ContinuousBackupsDescription"]
               ["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]}
        want = {"KeySchema": keys, "AttributeDefinitions": attributes, "BillingMode": r.inputs["billingMode"],
                "DeletionProtectionEnabled": r.inputs["deletionProtectionEnabled"],
                "SSE": ("ENABLED", sub(r.inputs["serverSideEncryption"]["kmsKeyArn"])),
                "PITR": "ENABLED" if r.inputs["pointInTimeRecovery"]["enabled"] else "DISABLED"}
        for key, value in want.items():
            if got[key] != value:
                out.append(f"{name}: journal table {table['TableName']}: {key} {got[key]!r} != rendered {value!r}")
        automation = {"KeySchema": TABLE_SCHEMA["KeySchema"],
                      "AttributeDefinitions": sorted((a["AttributeName"], a["AttributeType"])
                                                     for a in TABLE_SCHEMA["AttributeDefinitions"])}
        if {k: got[k] for k in automation} != automation:
            out.append(f"{name}: journal table keys {got['KeySchema']} are not the ones the journal writes "
                       f"({TABLE_SCHEMA['KeySchema']})")
        if exported.get("journalTable") != table["TableName"]:
            out.append(f"{name}: exported journalTable {exported.get('journalTable')} != {table['TableName']}")


def operator_trust_differences(rendered: Sequence[RenderedStack], inventory: Mapping[str, Any],
                               clients: Clients) -> list[str]:
    """Each consumer's exported external id and operator role against the live role's trust."""
    out = []
    automation_role = inventory["stacks"][next(s.spec.name for s in rendered if s.spec.role.value == "platform")][
        "automationRoleArn"]
    for stack in rendered:
        exported = inventory["stacks"][stack.spec.name]
        if not exported.get("operatorRoleArn"):
            continue
        role_name = exported["operatorRoleArn"].rsplit("/", 1)[-1]
        role = clients(stack.spec.name, "iam").get_role(RoleName=role_name)["Role"]
        if role["Arn"] != exported["operatorRoleArn"]:
            out.append(f"{stack.spec.name}: operatorRoleArn {exported['operatorRoleArn']} != {role['Arn']}")
        statements = _doc(role["AssumeRolePolicyDocument"])["Statement"]
        allowed = [s for s in statements if s.get("Effect") == "Allow"]
        # Besides the automation (with the external id), only this account's Slurm head (docs/security.md).
        head = f"arn:aws:iam::{exported['accountId']}:role/gpufleet-slurm-head"
        heads = [s for s in allowed if s.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn") == [head]]
        trusted = [(s["Principal"].get("AWS"), s.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId"))
                   for s in allowed if s not in heads]
        if trusted != [(automation_role, exported["externalId"])]:
            out.append(f"{stack.spec.name}: operator role trusts {trusted}, the inventory says "
                       f"{automation_role} with external id {exported['externalId']}")
        if exported["externalId"] != stack.exports.get("externalId"):
            out.append(f"{stack.spec.name}: external id {exported['externalId']} != rendered {stack.exports.get('externalId')}")
    return out


def with_change(rendered: Sequence[RenderedStack], stack: str, urn_suffix: str,
                change: Callable[[dict[str, Any]], None]) -> list[RenderedStack]:
    """A copy of the render with one resource's inputs changed (the render is frozen dataclasses)."""
    from dataclasses import replace

    out = []
    for s in rendered:
        if s.spec.name != stack:
            out.append(s)
            continue
        resources = []
        for r in s.resources:
            if r.urn.endswith(urn_suffix):
                inputs = copy.deepcopy(dict(r.inputs))
                change(inputs)
                r = replace(r, inputs=inputs)
            resources.append(r)
        out.append(replace(s, resources=tuple(resources)))
    return out

"""Apply the rendered Pulumi program into the emulated AWS, as ``pulumi up`` would, for what the
automation reads.

Input is the render ``gpufleet plan`` makes (``gpufleet.infra.offline.render.render_fleet`` over the
stack files): every resource with its inputs, exactly as the engine would receive them. Each stack's
account is entered the way its provider enters it: STS AssumeRole of the provider's ``assumeRoles``
role and session name, then GetCallerIdentity, which must name an account in ``allowedAccountIds``.
The platform stack is deployed first (consumers' launch templates name its reservations, their
operator roles trust its automation role), then the consumer stacks side by side, as separate
``pulumi up`` runs would be. Within a stack, resources are applied by type in ``ORDER``, a
topological order of the types applied: each input that names another resource (a VPC id, a
reservation, a role) is rewritten with the id the emulator gave that resource (``IdMap``), and so
are the exports afterwards.

Applied, with the create calls the AWS provider makes:

- ``aws:iam/role:Role``, ``rolePolicy:RolePolicy``, ``rolePolicyAttachment:RolePolicyAttachment``,
  ``instanceProfile:InstanceProfile``: names, paths, the trust and inline policy documents byte for
  byte as rendered;
- ``aws:ec2/vpc:Vpc``, ``subnet:Subnet`` (by AZ ID), ``placementGroup:PlacementGroup``;
- ``aws:ec2/capacityReservation:CapacityReservation`` (its AZ name is the one the emulator gives the
  AZ ID in the owner account: the render's is a mock invoke result), ``aws:ram/resourceShare``,
  ``resourceAssociation``, ``principalAssociation`` (AssociateResourceShare);
- ``aws:dynamodb/table:Table``: key schema, billing mode, encryption, deletion protection, then
  point-in-time recovery (UpdateContinuousBackups), as the provider does;
- ``aws:ec2/launchTemplate:LaunchTemplate``: every rendered setting (instance type, image, user
  data, instance profile, network interfaces, metadata options, block devices, the reservation
  target, market options, placement, instance tags);
- ``aws:autoscaling/group:Group``: name, bounds, initial desired size, subnets, launch template
  version, health check, enabled metrics (EnableMetricsCollection, granularity 1Minute), tags;
- ``aws:eks/nodeGroup:NodeGroup`` whose Auto Scaling group a stack exports in ``nodeGroups``: the
  group EKS creates for it, as AWS documents it: named ``eks-<node group name>-<uuid>``, tagged
  ``eks:cluster-name``, ``eks:nodegroup-name``, ``k8s.io/cluster-autoscaler/enabled=true``,
  ``k8s.io/cluster-autoscaler/<cluster>=owned`` and ``kubernetes.io/cluster/<cluster>=owned``
  (the node group's own tags do not propagate to it), bounded by the node group's scaling config,
  in its subnets, on its launch template.

Provider default tags (``defaultTags``) are added to every tagged resource except Auto Scaling
groups, which the AWS provider does not default-tag.

Skipped, because the automation reads none of them (``SKIPPED``): KMS keys and EBS defaults,
CloudTrail, AWS Config, S3 buckets and their settings and objects, CloudWatch log groups and
alarms, SNS topics, flow logs, security groups, internet and NAT gateways, Elastic IPs, route tables,
VPC endpoints, the Slurm head instance, Secrets Manager, FSx for Lustre, Managed Prometheus and
Grafana, the EKS cluster (a remote component), its add-ons, pod identities and Kubernetes objects,
EKS node groups no stack exports (the system node group), and providers. Exports that name a skipped
resource keep their rendered values; launch templates keep the rendered ids of the security groups
and KMS keys they name.

Where moto ignores a rendered setting (launch templates are stored whole, but instances get one
network interface, moto's default metadata options and no EFA), the template still holds it; the
identity test reads the template, not the instances. EKS would launch a copy of the launch
template with its AMI (``eks-<uuid>``); the sandbox's group launches the template itself.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3

from gpufleet.automation.sandbox.api_params import UnappliedInput, to_params
from gpufleet.automation.sandbox.id_map import IdMap
from gpufleet.infra.offline.mocks import az_name as rendered_az_name
from gpufleet.infra.rendered import RenderedResource, RenderedStack
from gpufleet.infra.stackfile import Role

ORDER = (
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/placementGroup:PlacementGroup",
    "aws:ec2/capacityReservation:CapacityReservation",
    "aws:ram/resourceShare:ResourceShare",
    "aws:ram/resourceAssociation:ResourceAssociation",
    "aws:ram/principalAssociation:PrincipalAssociation",
    "aws:dynamodb/table:Table",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:autoscaling/group:Group",
    "aws:eks/nodeGroup:NodeGroup",
)
"""Types applied, in an order where every input names something applied before it."""

SKIPPED = frozenset({
    "pulumi:providers:aws", "pulumi:providers:kubernetes", "eks:index:Cluster",
    "aws:kms/key:Key", "aws:ebs/defaultKmsKey:DefaultKmsKey", "aws:ebs/encryptionByDefault:EncryptionByDefault",
    "aws:cloudtrail/trail:Trail", "aws:cfg/recorder:Recorder", "aws:cfg/deliveryChannel:DeliveryChannel",
    "aws:cfg/recorderStatus:RecorderStatus",
    "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "aws:s3/bucket:Bucket",
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketObjectv2:BucketObjectv2",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "aws:s3/bucketLogging:BucketLogging",
    "aws:cloudwatch/logGroup:LogGroup", "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:sns/topic:Topic", "aws:sns/topicPolicy:TopicPolicy", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ec2/instance:Instance", "aws:secretsmanager/secret:Secret",
    "aws:fsx/lustreFileSystem:LustreFileSystem", "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation",
    "aws:amp/workspace:Workspace", "aws:amp/ruleGroupNamespace:RuleGroupNamespace",
    "aws:amp/alertManagerDefinition:AlertManagerDefinition", "aws:grafana/workspace:Workspace",
    "aws:eks/addon:Addon", "aws:eks/podIdentityAssociation:PodIdentityAssociation",
})
"""Types the automation reads nothing of (see the module docstring); Kubernetes objects too."""

EKS_ASG_PROPAGATED = True
"""EKS puts its tags on the group's instances as well (nodes carry eks:cluster-name, ...)."""
METRICS_GRANULARITY = "1Minute"
"""The only granularity Auto Scaling accepts (the provider's default)."""


class ApplyError(RuntimeError):
    """A rendered resource the sandbox could not apply; names the stack and URN."""


def is_skipped(type_token: str) -> bool:
    return type_token in SKIPPED or type_token.startswith(("kubernetes:", "gpufleet:"))


@functools.cache
def _base_session(credentials: tuple[str, str]) -> boto3.Session:
    # One botocore session per process: it builds each client class once (~40 ms each).
    return boto3.Session(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1])


@dataclass
class AppliedFleet:
    """What one apply made."""

    ids: IdMap
    """Rendered id/ARN -> emulated id/ARN."""
    exports: dict[str, dict[str, Any]]
    """Each stack's exports with every rendered id replaced."""
    applied: dict[str, dict[str, str]] = field(default_factory=dict)
    """Stack -> URN -> the emulated id of each applied resource."""
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    """Stack -> type -> count of resources not applied."""
    eks_groups: dict[str, str] = field(default_factory=dict)
    """URN of each applied EKS node group -> the name of the Auto Scaling group made for it."""


SERVICE_OF = {"iam": "iam", "ec2": "ec2", "ram": "ram", "dynamodb": "dynamodb", "autoscaling": "autoscaling",
              "eks": "autoscaling"}
"""The client each applied type's module needs (EKS node groups: the Auto Scaling group EKS makes)."""


class Account:
    """One stack's account, entered as its provider enters it; its clients made at once."""

    def __init__(self, base: boto3.Session, endpoint: str, stack: RenderedStack) -> None:
        provider = next((r for r in stack.resources if r.type == "pulumi:providers:aws"), None)
        if provider is None:
            raise ApplyError(f"{stack.spec.name}: the render has no aws provider")
        self.stack = stack
        self.base, self.endpoint = base, endpoint
        self.region = str(provider.inputs.get("region") or stack.spec.region)
        self.default_tags: dict[str, str] = dict(_json(provider.inputs.get("defaultTags"), {}).get("tags") or {})
        roles = _json(provider.inputs.get("assumeRoles"), [])
        allowed = [str(a) for a in _json(provider.inputs.get("allowedAccountIds"), [])]
        self.role_name = roles[0]["roleArn"].rsplit("/", 1)[-1] if roles else "the caller"
        credentials: dict[str, str] = {}
        if roles:
            role = roles[0]
            sts = base.client("sts", region_name=self.region, endpoint_url=endpoint)
            creds = sts.assume_role(RoleArn=role["roleArn"],
                                    RoleSessionName=role.get("sessionName") or "gpufleet-sandbox")["Credentials"]
            credentials = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                           "aws_session_token": creds["SessionToken"]}
        # Made up front for the stack's types: a boto3 session must not make clients in two threads.
        services = {"sts"} | {SERVICE_OF[r.type.split(":")[1].split("/")[0]] for r in stack.resources
                              if r.type in ORDER}
        self._clients = {service: base.client(service, region_name=self.region, endpoint_url=endpoint, **credentials)
                         for service in sorted(services)}
        self.account_id = self.client("sts").get_caller_identity()["Account"]
        if allowed and self.account_id not in allowed:
            raise ApplyError(f"{stack.spec.name}: entered account {self.account_id}, but the provider allows only "
                             f"{', '.join(allowed)}")

    def client(self, service: str) -> Any:
        return self._clients[service]

    def tags(self, own: Mapping[str, Any] | None) -> dict[str, str]:
        """The provider's default tags under the resource's own (own ones win, as in the provider)."""
        return {**self.default_tags, **{str(k): str(v) for k, v in (own or {}).items()}}

    def tag_list(self, own: Mapping[str, Any] | None) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self.tags(own).items()]

    def tag_spec(self, resource_type: str, own: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        tags = self.tag_list(own)
        return [{"ResourceType": resource_type, "Tags": tags}] if tags else []


def _json(value: Any, default: Any) -> Any:
    """Provider settings arrive JSON-encoded (see RenderedResource.inputs)."""
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value


def _consume(resource: RenderedResource, applied: Iterable[str], provider_only: Iterable[str] = ()) -> None:
    """Refuse a resource with an input this module does not apply (say so rather than drop it)."""
    left = set(resource.inputs) - set(applied) - set(provider_only)
    if left:
        raise UnappliedInput(f"{resource.urn}: inputs {', '.join(sorted(left))} are not applied by the sandbox "
                             "(teach gpufleet/automation/sandbox/apply.py)")


class Applier:
    """Applies rendered stacks into one emulator endpoint; ``progress`` gets a line per step."""

    def __init__(self, endpoint: str, credentials: tuple[str, str],
                 progress: Callable[[str], None] | None = None) -> None:
        self.endpoint = endpoint
        self.base = _base_session(credentials)
        self.progress = progress or (lambda _line: None)
        self.handlers: dict[str, Callable[[Account, RenderedResource], str | None]] = {
            "aws:iam/role:Role": self._role,
            "aws:iam/rolePolicy:RolePolicy": self._role_policy,
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment": self._role_policy_attachment,
            "aws:iam/instanceProfile:InstanceProfile": self._instance_profile,
            "aws:ec2/vpc:Vpc": self._vpc,
            "aws:ec2/subnet:Subnet": self._subnet,
            "aws:ec2/placementGroup:PlacementGroup": self._placement_group,
            "aws:ec2/capacityReservation:CapacityReservation": self._capacity_reservation,
            "aws:ram/resourceShare:ResourceShare": self._resource_share,
            "aws:ram/resourceAssociation:ResourceAssociation": self._resource_association,
            "aws:ram/principalAssociation:PrincipalAssociation": self._principal_association,
            "aws:dynamodb/table:Table": self._table,
            "aws:ec2/launchTemplate:LaunchTemplate": self._launch_template,
            "aws:autoscaling/group:Group": self._asg,
            "aws:eks/nodeGroup:NodeGroup": self._eks_node_group,
        }
        assert tuple(self.handlers) == ORDER

    def apply(self, stacks: Sequence[RenderedStack]) -> AppliedFleet:
        fleet = AppliedFleet(ids=IdMap(), exports={})
        self.fleet = fleet
        platforms = [s for s in stacks if s.spec.role is Role.PLATFORM]
        consumers = sorted((s for s in stacks if s.spec.role is not Role.PLATFORM), key=lambda s: s.spec.name)
        for stack in platforms:
            self._apply_stack(stack, Account(self.base, self.endpoint, stack))
        accounts = [(stack, Account(self.base, self.endpoint, stack)) for stack in consumers]
        if accounts:
            with ThreadPoolExecutor(max_workers=len(accounts), thread_name_prefix="gpufleet-apply") as pool:
                for done in [pool.submit(self._apply_stack, stack, account) for stack, account in accounts]:
                    done.result()
        fleet.exports = {s.spec.name: fleet.ids.substitute(dict(s.exports)) for s in stacks}
        return fleet

    def _apply_stack(self, stack: RenderedStack, account: Account) -> None:
        began = time.monotonic()
        exported_asgs = {g.get("asgName") for g in stack.exports.get("nodeGroups") or ()}
        by_type: dict[str, list[RenderedResource]] = {}
        skipped: Counter[str] = Counter()
        for resource in stack.resources:
            if resource.type in self.handlers:
                if resource.type == "aws:eks/nodeGroup:NodeGroup" and _eks_asg_name(resource) not in exported_asgs:
                    skipped[resource.type] += 1
                    continue
                by_type.setdefault(resource.type, []).append(resource)
            elif is_skipped(resource.type):
                skipped[resource.type] += 1
            else:
                raise ApplyError(f"{stack.spec.name}: {resource.urn}: type {resource.type} is neither applied nor "
                                 "listed as skipped in gpufleet/automation/sandbox/apply.py")
        applied = self.fleet.applied.setdefault(stack.spec.name, {})
        for type_token in ORDER:
            for resource in by_type.get(type_token, ()):
                try:
                    real = self.handlers[type_token](account, resource)
                except UnappliedInput:
                    raise
                except Exception as err:  # noqa: BLE001 (re-raised naming the resource)
                    raise ApplyError(f"{stack.spec.name}: applying {resource.urn} failed: {err}") from err
                applied[resource.urn] = real or ""
        self.fleet.skipped[stack.spec.name] = skipped
        self.progress(f"{stack.spec.name}: account {account.account_id} (as {account.role_name}): "
                      f"{len(applied)} resources applied, {sum(skipped.values())} skipped, "
                      f"{time.monotonic() - began:.2f} s")

    # ---- IAM ------------------------------------------------------------------------------------

    def _role(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "path", "assumeRolePolicy", "description", "maxSessionDuration", "tags"),
                 provider_only=("forceDetachPolicies",))
        ids = self.fleet.ids
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

    def _role_policy(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("role", "policy", "name"))
        ids = self.fleet.ids
        role, name = ids.substitute(r.inputs["role"]), r.outputs.get("name") or r.inputs["name"]
        account.client("iam").put_role_policy(RoleName=role, PolicyName=name,
                                              PolicyDocument=ids.substitute(r.inputs["policy"]))
        return f"{role}:{name}"

    def _role_policy_attachment(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("role", "policyArn"))
        role, arn = self.fleet.ids.substitute(r.inputs["role"]), self.fleet.ids.substitute(r.inputs["policyArn"])
        account.client("iam").attach_role_policy(RoleName=role, PolicyArn=arn)
        return f"{role}/{arn}"

    def _instance_profile(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "path", "role", "tags"))
        iam = account.client("iam")
        params: dict[str, Any] = {"InstanceProfileName": r.outputs.get("name") or r.inputs["name"],
                                  "Path": r.inputs.get("path") or "/"}
        if tags := account.tag_list(r.inputs.get("tags")):
            params["Tags"] = tags
        profile = iam.create_instance_profile(**params)["InstanceProfile"]
        if r.inputs.get("role"):
            iam.add_role_to_instance_profile(InstanceProfileName=profile["InstanceProfileName"],
                                             RoleName=self.fleet.ids.substitute(r.inputs["role"]))
        self.fleet.ids.add(r.outputs.get("arn"), profile["Arn"])
        return profile["Arn"]

    # ---- network --------------------------------------------------------------------------------

    def _vpc(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("cidrBlock", "enableDnsSupport", "enableDnsHostnames", "tags"))
        ec2 = account.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=r.inputs["cidrBlock"],
                             TagSpecifications=account.tag_spec("vpc", r.inputs.get("tags")))["Vpc"]
        for key in ("enableDnsSupport", "enableDnsHostnames"):
            if key in r.inputs:
                ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], **{key[0].upper() + key[1:]: {"Value": bool(r.inputs[key])}})
        self._ec2_ids(account, r, "vpc", vpc["VpcId"])
        return vpc["VpcId"]

    def _subnet(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("vpcId", "cidrBlock", "availabilityZoneId", "mapPublicIpOnLaunch", "tags"))
        ec2 = account.client("ec2")
        subnet = ec2.create_subnet(VpcId=self.fleet.ids.substitute(r.inputs["vpcId"]), CidrBlock=r.inputs["cidrBlock"],
                                   AvailabilityZoneId=r.inputs["availabilityZoneId"],
                                   TagSpecifications=account.tag_spec("subnet", r.inputs.get("tags")))["Subnet"]
        if r.inputs.get("mapPublicIpOnLaunch"):
            ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
        self._ec2_ids(account, r, "subnet", subnet["SubnetId"])
        return subnet["SubnetId"]

    def _placement_group(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "strategy", "partitionCount", "spreadLevel", "tags"))
        params: dict[str, Any] = {"GroupName": r.outputs.get("name") or r.inputs["name"],
                                  "Strategy": r.inputs.get("strategy", "cluster"),
                                  "TagSpecifications": account.tag_spec("placement-group", r.inputs.get("tags"))}
        if r.inputs.get("partitionCount"):
            params["PartitionCount"] = int(r.inputs["partitionCount"])
        if r.inputs.get("spreadLevel"):
            params["SpreadLevel"] = r.inputs["spreadLevel"]
        group = account.client("ec2").create_placement_group(**params)["PlacementGroup"]
        self.fleet.ids.add(r.outputs.get("placementGroupId"), group["GroupId"])
        return group["GroupName"]

    def _ec2_ids(self, account: Account, r: RenderedResource, kind: str, real_id: str) -> None:
        self.fleet.ids.add(r.outputs.get("arn"), f"arn:aws:ec2:{account.region}:{account.account_id}:{kind}/{real_id}")
        self.fleet.ids.add(r.id, real_id)

    # ---- capacity -------------------------------------------------------------------------------

    def zone_name(self, account: Account, rendered: str) -> str:
        """The emulator's AZ name for the AZ ID whose rendered (mock invoke) name is ``rendered``."""
        zones = account.client("ec2").describe_availability_zones()["AvailabilityZones"]
        for zone in zones:
            if rendered_az_name(account.region, account.account_id, zone["ZoneId"]) == rendered:
                return zone["ZoneName"]
        raise ApplyError(f"no AZ of {account.region} renders as {rendered} in account {account.account_id}")

    def _capacity_reservation(self, account: Account, r: RenderedResource) -> str:
        applied = ("instanceType", "instancePlatform", "availabilityZone", "instanceCount", "instanceMatchCriteria",
                   "tenancy", "endDateType", "endDate", "ebsOptimized", "ephemeralStorage", "tags")
        _consume(r, applied)
        ec2 = account.client("ec2")
        shape = ec2.meta.service_model.operation_model("CreateCapacityReservation").input_shape
        inputs = {k: v for k, v in r.inputs.items() if k != "tags"}
        inputs["availabilityZone"] = self.zone_name(account, r.inputs["availabilityZone"])
        params = to_params(inputs, shape, where=r.urn)
        params["TagSpecifications"] = account.tag_spec("capacity-reservation", r.inputs.get("tags"))
        reservation = ec2.create_capacity_reservation(**params)["CapacityReservation"]
        self.fleet.ids.add(r.outputs.get("arn"), reservation["CapacityReservationArn"])
        self.fleet.ids.add(r.id, reservation["CapacityReservationId"])
        return reservation["CapacityReservationId"]

    def _resource_share(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "allowExternalPrincipals", "tags"))
        params: dict[str, Any] = {"name": r.inputs["name"],
                                  "allowExternalPrincipals": bool(r.inputs.get("allowExternalPrincipals", True))}
        if tags := account.tags(r.inputs.get("tags")):
            params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        share = account.client("ram").create_resource_share(**params)["resourceShare"]
        self.fleet.ids.add(r.outputs.get("arn"), share["resourceShareArn"])
        return share["resourceShareArn"]

    def _resource_association(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("resourceArn", "resourceShareArn"))
        share, arn = (self.fleet.ids.substitute(r.inputs[k]) for k in ("resourceShareArn", "resourceArn"))
        account.client("ram").associate_resource_share(resourceShareArn=share, resourceArns=[arn])
        return f"{share},{arn}"

    def _principal_association(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("principal", "resourceShareArn"))
        share, principal = (self.fleet.ids.substitute(r.inputs[k]) for k in ("resourceShareArn", "principal"))
        account.client("ram").associate_resource_share(resourceShareArn=share, principals=[principal])
        return f"{share},{principal}"

    def _table(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "billingMode", "hashKey", "rangeKey", "attributes", "serverSideEncryption",
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
                params["SSESpecification"]["KMSMasterKeyId"] = self.fleet.ids.substitute(sse["kmsKeyArn"])
        if tags := account.tag_list(r.inputs.get("tags")):
            params["Tags"] = tags
        table = ddb.create_table(**params)["TableDescription"]
        if (r.inputs.get("pointInTimeRecovery") or {}).get("enabled"):
            ddb.update_continuous_backups(TableName=table["TableName"],
                                          PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        self.fleet.ids.add(r.outputs.get("arn"), table["TableArn"])
        return table["TableArn"]

    # ---- compute --------------------------------------------------------------------------------

    def _launch_template(self, account: Account, r: RenderedResource) -> str:
        own = ("name", "tags", "description")
        provider_only = ("updateDefaultVersion", "defaultVersion")
        ec2 = account.client("ec2")
        shape = ec2.meta.service_model.operation_model("CreateLaunchTemplate").input_shape
        inputs = {k: v for k, v in r.inputs.items() if k not in own + provider_only}
        data = to_params(self.fleet.ids.substitute(inputs), shape.members["LaunchTemplateData"], where=r.urn,
                         renames={"securityGroups": "Groups", "vpcSecurityGroupIds": "SecurityGroupIds"})
        params: dict[str, Any] = {"LaunchTemplateName": r.outputs.get("name") or r.inputs["name"],
                                  "LaunchTemplateData": data}
        if r.inputs.get("description"):
            params["VersionDescription"] = r.inputs["description"]
        if spec := account.tag_spec("launch-template", r.inputs.get("tags")):
            params["TagSpecifications"] = spec
        template = ec2.create_launch_template(**params)["LaunchTemplate"]
        real = template["LaunchTemplateId"]
        self._ec2_ids(account, r, "launch-template", real)
        return real

    def _asg(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("name", "minSize", "maxSize", "desiredCapacity", "vpcZoneIdentifiers", "launchTemplate",
                     "healthCheckType", "healthCheckGracePeriod", "enabledMetrics", "tags"),
                 provider_only=("waitForCapacityTimeout", "forceDelete"))
        name = r.outputs.get("name") or r.inputs["name"]
        tags = [{"Key": t["key"], "Value": str(t["value"]), "PropagateAtLaunch": bool(t.get("propagateAtLaunch"))}
                for t in r.inputs.get("tags") or ()]
        params: dict[str, Any] = {
            "AutoScalingGroupName": name, "MinSize": int(r.inputs["minSize"]), "MaxSize": int(r.inputs["maxSize"]),
            "VPCZoneIdentifier": ",".join(self.fleet.ids.substitute(list(r.inputs.get("vpcZoneIdentifiers") or ()))),
            "LaunchTemplate": self._template_ref(r.inputs["launchTemplate"]), "Tags": tags,
        }
        if r.inputs.get("desiredCapacity") is not None:
            params["DesiredCapacity"] = int(r.inputs["desiredCapacity"])
        if r.inputs.get("healthCheckType"):
            params["HealthCheckType"] = r.inputs["healthCheckType"]
        if r.inputs.get("healthCheckGracePeriod") is not None:
            params["HealthCheckGracePeriod"] = int(r.inputs["healthCheckGracePeriod"])
        self._create_group(account, params, r.inputs.get("enabledMetrics"))
        return name

    def _eks_node_group(self, account: Account, r: RenderedResource) -> str:
        _consume(r, ("clusterName", "nodeGroupName", "scalingConfig", "subnetIds", "launchTemplate", "tags",
                     "amiType", "capacityType", "instanceTypes", "labels", "taints", "updateConfig", "nodeRoleArn"))
        cluster, group = r.inputs["clusterName"], r.outputs.get("nodeGroupName") or r.inputs["nodeGroupName"]
        name = f"eks-{group}-{uuid.uuid4()}"
        scaling = r.inputs["scalingConfig"]
        tags = {"eks:cluster-name": cluster, "eks:nodegroup-name": group, "k8s.io/cluster-autoscaler/enabled": "true",
                f"k8s.io/cluster-autoscaler/{cluster}": "owned", f"kubernetes.io/cluster/{cluster}": "owned"}
        params: dict[str, Any] = {
            "AutoScalingGroupName": name, "MinSize": int(scaling["minSize"]), "MaxSize": int(scaling["maxSize"]),
            "DesiredCapacity": int(scaling["desiredSize"]),
            "VPCZoneIdentifier": ",".join(self.fleet.ids.substitute(list(r.inputs["subnetIds"]))),
            "LaunchTemplate": self._template_ref(r.inputs["launchTemplate"]),
            "Tags": [{"Key": k, "Value": v, "PropagateAtLaunch": EKS_ASG_PROPAGATED} for k, v in tags.items()],
        }
        self._create_group(account, params, None)
        self.fleet.ids.add(_eks_asg_name(r), name)
        self.fleet.eks_groups[r.urn] = name
        return name

    def _template_ref(self, ref: Mapping[str, Any]) -> dict[str, str]:
        out = {"Version": str(ref.get("version") or "$Default")}
        if ref.get("id"):
            out["LaunchTemplateId"] = self.fleet.ids.substitute(ref["id"])
        else:
            out["LaunchTemplateName"] = ref["name"]
        return out

    def _create_group(self, account: Account, params: dict[str, Any], metrics: Sequence[str] | None) -> None:
        asg = account.client("autoscaling")
        asg.create_auto_scaling_group(**params)
        if metrics:
            asg.enable_metrics_collection(AutoScalingGroupName=params["AutoScalingGroupName"], Metrics=list(metrics),
                                          Granularity=METRICS_GRANULARITY)


def _eks_asg_name(resource: RenderedResource) -> str | None:
    """The Auto Scaling group name in a rendered node group's outputs (a mock of EKS's answer)."""
    for item in resource.outputs.get("resources") or ():
        for group in item.get("autoscalingGroups") or ():
            if group.get("name"):
                return str(group["name"])
    return None


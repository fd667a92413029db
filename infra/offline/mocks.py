"""Pulumi mocks that answer like AWS would: ids, ARNs and names in the stack's account and region.

Deterministic: the same stack renders the same ids every time (hashes of account, type and name),
so renders can be compared. ``pulumi:pulumi:StackReference`` returns the exports given for the
referenced stack, which is how consumers see the platform's pools offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from gpufleet.infra.key_policies import partition_of

AZ_LETTERS = "abcdef"


def az_name(region: str, account_id: str, az_id: str) -> str:
    """AZ names are shuffled per account (use1-az4 is us-east-1a in one account, 1c in another)."""
    number = int(az_id.rsplit("az", 1)[1])
    shift = int(account_id) % len(AZ_LETTERS)
    return region + AZ_LETTERS[(number - 1 + shift) % len(AZ_LETTERS)]


class FleetMocks(pulumi.runtime.Mocks):
    """Mocks for one stack: its account and region, and the stacks it may reference."""

    def __init__(self, *, account_id: str, region: str,
                 stack_outputs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.account_id = account_id
        self.region = region
        self.partition = partition_of(region)
        self.stack_outputs = dict(stack_outputs or {})
        """Exports by fully qualified stack name (org/project/stack), for StackReference."""

    # -- helpers -------------------------------------------------------------------------------
    def _hex(self, *parts: str, length: int = 17) -> str:
        digest = hashlib.sha256("/".join((self.account_id, self.region, *parts)).encode()).hexdigest()
        return digest[:length]

    def _uuid(self, *parts: str) -> str:
        return str(uuid.UUID(self._hex(*parts, length=32)))

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account_id if account else ''}:{resource}")

    def _autoname(self, name: str, typ: str) -> str:
        return f"{name}-{self._hex(typ, name, 'autoname', length=7)}"

    # -- pulumi.runtime.Mocks ----------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            ref = args.inputs.get("name", args.name)
            outputs = self.stack_outputs.get(ref, {})
            return ref, {"name": ref, "outputs": dict(outputs), "secretOutputNames": []}
        if args.typ in _COMPONENT_HANDLERS:
            return _COMPONENT_HANDLERS[args.typ](self, args.name, dict(args.inputs))
        if not args.custom:
            return "", {}
        state = dict(args.inputs)
        handler = _HANDLERS.get(args.typ)
        if handler is None:
            return f"{args.name}-{self._hex(args.typ, args.name, length=8)}", state
        resource_id, extra = handler(self, args.name, state)
        state.update(extra)
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list | None]:
        if args.token == "aws:index/getAvailabilityZone:getAvailabilityZone":
            zone_id = args.args.get("zoneId") or "use1-az1"
            return {"name": az_name(self.region, self.account_id, zone_id), "zoneId": zone_id,
                    "region": self.region, "state": "available", "zoneType": "availability-zone"}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account_id, "arn": self._arn("iam", "root", region=False),
                    "userId": self.account_id}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            # Public image parameters (/aws/service/...) hold an AMI id, as they do in every region.
            name = args.args.get("name", "")
            value = f"ami-{self._hex('ssm', name)}" if name.endswith("ami-id") else f"value-of-{name}"
            return {"name": name, "value": value, "insecureValue": value, "type": "String", "version": 1,
                    "arn": self._arn("ssm", f"parameter{name}"), "id": name, "withDecryption": True}, []
        return {}, []


Handler = Callable[[FleetMocks, str, dict[str, Any]], tuple[str, dict[str, Any]]]


def _ec2(prefix: str, arn_kind: str | None = None) -> Handler:
    def handle(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        resource_id = f"{prefix}-{m._hex(prefix, name)}"
        extra: dict[str, Any] = {"id": resource_id, "ownerId": m.account_id}
        if arn_kind:
            extra["arn"] = m._arn("ec2", f"{arn_kind}/{resource_id}")
        return resource_id, extra
    return handle


def _subnet(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resource_id, extra = _ec2("subnet", "subnet")(m, name, state)
    if state.get("availabilityZoneId"):
        extra["availabilityZone"] = az_name(m.region, m.account_id, state["availabilityZoneId"])
    return resource_id, extra


def _vpc_endpoint(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resource_id, extra = _ec2("vpce", "vpc-endpoint")(m, name, state)
    if state.get("vpcEndpointType") == "Gateway":
        extra["prefixListId"] = f"pl-{m._hex('pl', name, length=8)}"
    extra["state"] = "available"
    return resource_id, extra


def _eip(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resource_id, extra = _ec2("eipalloc", "elastic-ip")(m, name, state)
    raw = bytes.fromhex(m._hex("ip", name, length=4))
    extra.update(allocationId=resource_id, publicIp=f"44.{raw[0]}.{raw[1]}.{max(raw[0] ^ raw[1], 1)}")
    return resource_id, extra


def _launch_template(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resource_id, extra = _ec2("lt", "launch-template")(m, name, state)
    extra.update(latestVersion=1, defaultVersion=1, name=state.get("name") or m._autoname(name, "lt"))
    return resource_id, extra


def _placement_group(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    pg_name = state.get("name") or m._autoname(name, "pg")
    return pg_name, {"name": pg_name, "placementGroupId": f"pg-{m._hex('pg', name)}",
                     "arn": m._arn("ec2", f"placement-group/{pg_name}")}


def _capacity_reservation(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resource_id, extra = _ec2("cr", "capacity-reservation")(m, name, state)
    extra.update(ownerId=m.account_id, state="active")
    return resource_id, extra


def _kms_key(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key_id = m._uuid("kms", name)
    return key_id, {"keyId": key_id, "arn": m._arn("kms", f"key/{key_id}")}


def _log_group(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group = state.get("name") or m._autoname(name, "lg")
    return group, {"name": group, "arn": m._arn("logs", f"log-group:{group}")}


def _iam_role(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role = state.get("name") or m._autoname(name, "role")
    path = state.get("path") or "/"
    return role, {"name": role, "arn": m._arn("iam", f"role{path}{role}", region=False),
                  "uniqueId": "AROA" + m._hex("role", name, length=17).upper()}


def _role_policy(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    policy = state.get("name") or m._autoname(name, "policy")
    return f"{state.get('role')}:{policy}", {"name": policy}


def _bucket(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    bucket = state.get("bucket") or m._autoname(name, "bucket")
    return bucket, {"bucket": bucket, "arn": f"arn:{m.partition}:s3:::{bucket}",
                    "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                    "bucketRegionalDomainName": f"{bucket}.s3.{m.region}.amazonaws.com", "region": m.region}


def _bucket_child(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return str(state.get("bucket")), {}


def _lustre(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fs_id = f"fs-{m._hex('fs', name)}"
    return fs_id, {"arn": m._arn("fsx", f"file-system/{fs_id}"),
                   "dnsName": f"{fs_id}.fsx.{m.region}.amazonaws.com",
                   "mountName": m._hex("mount", name, length=8), "ownerId": m.account_id,
                   "networkInterfaceIds": [f"eni-{m._hex('eni', name)}"]}


def _dra(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    dra_id = f"dra-{m._hex('dra', name)}"
    return dra_id, {"arn": m._arn("fsx", f"association/{state.get('fileSystemId')}/{dra_id}"),
                    "associationId": dra_id}


def _resource_share(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = m._arn("ram", f"resource-share/{m._uuid('ram', name)}")
    return arn, {"arn": arn}


def _ram_association(field_name: str) -> Handler:
    def handle(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return f"{state.get('resourceShareArn')},{state.get(field_name)}", {}
    return handle


def _dynamodb_table(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table = state.get("name") or m._autoname(name, "table")
    return table, {"name": table, "arn": m._arn("dynamodb", f"table/{table}")}


def _asg(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group = state.get("name") or m._autoname(name, "asg")
    return group, {"name": group, "arn": m._arn(
        "autoscaling", f"autoScalingGroup:{m._uuid('asg', name)}:autoScalingGroupName/{group}")}


def _provider(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return m._uuid("provider", name), {}


def _eks_cluster(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """pulumi_eks.Cluster is a remote component: its children never reach the mocks, only its outputs."""
    cluster = state.get("name") or m._autoname(name, "eks")
    endpoint = f"https://{m._hex('eks', name, length=32).upper()}.gr7.{m.region}.eks.amazonaws.com"
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "aws",
        "clusters": [{"name": "kubernetes", "cluster": {"server": endpoint, "certificate-authority-data": "LS0t"}}],
        "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
        "users": [{"name": "aws", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster, "--output", "json"]}}}],
    }
    cluster_sg = f"sg-{m._hex('eks-cluster-sg', name)}"
    return "", {"kubeconfig": kubeconfig, "kubeconfigJson": json.dumps(kubeconfig),
                "clusterSecurityGroupId": cluster_sg, "nodeSecurityGroupId": cluster_sg,
                "oidcProviderArn": "", "oidcIssuer": ""}


def _eks_node_group(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group = state.get("nodeGroupName") or m._autoname(name, "ng")
    cluster = state.get("clusterName")
    uid = m._uuid("eks-ng", name)
    return f"{cluster}:{group}", {
        "nodeGroupName": group, "status": "ACTIVE",
        "arn": m._arn("eks", f"nodegroup/{cluster}/{group}/{uid}"),
        # EKS names the group's Auto Scaling group eks-<node group>-<uuid>.
        "resources": [{"autoscalingGroups": [{"name": f"eks-{group}-{uid}"}], "remoteAccessSecurityGroupId": ""}],
    }


def _eks_addon(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    cluster, addon = state.get("clusterName"), state.get("addonName")
    return f"{cluster}:{addon}", {"arn": m._arn("eks", f"addon/{cluster}/{addon}/{m._uuid('addon', name)}"),
                                  "addonVersion": state.get("addonVersion") or "v1.0.0-eksbuild.1"}


def _amp_workspace(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ws = f"ws-{m._uuid('amp', name)}"
    return ws, {"arn": m._arn("aps", f"workspace/{ws}"),
                "prometheusEndpoint": f"https://aps-workspaces.{m.region}.amazonaws.com/workspaces/{ws}/"}


def _amp_namespace(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = m._arn("aps", f"rulegroupsnamespace/{state.get('workspaceId')}/{state.get('name')}")
    return arn, {"arn": arn}


def _grafana_workspace(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ws = f"g-{m._hex('grafana', name, length=10)}"
    return ws, {"arn": m._arn("grafana", f"/workspaces/{ws}"),
                "endpoint": f"{ws}.grafana-workspace.{m.region}.amazonaws.com"}


GRAFANA_ROLES = ("ADMIN", "EDITOR", "VIEWER")
MAX_TOKEN_SECONDS = 2592000


def _grafana_service_account(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if state.get("grafanaRole") not in GRAFANA_ROLES:
        raise ValueError(f"{name}: grafanaRole {state.get('grafanaRole')!r} is not one of {GRAFANA_ROLES}")
    account_id = str(int(m._hex("grafana-sa", name, length=6), 16))
    return f"{state.get('workspaceId')},{account_id}", {"serviceAccountId": account_id}


def _grafana_token(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if not 60 <= int(state.get("secondsToLive") or 0) <= MAX_TOKEN_SECONDS:
        raise ValueError(f"{name}: secondsToLive {state.get('secondsToLive')!r} must be 60-{MAX_TOKEN_SECONDS}")
    token_id = str(int(m._hex("grafana-token", name, length=6), 16))
    return f"{state.get('workspaceId')},{state.get('serviceAccountId')},{token_id}", {
        "serviceAccountTokenId": token_id, "key": f"glsa_{m._hex('grafana-key', name, length=32)}"}


def _sns_topic(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    topic = state.get("name") or m._autoname(name, "topic")
    arn = m._arn("sns", topic)
    return arn, {"arn": arn, "name": topic}


def _lambda_function(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    function = state.get("name") or m._autoname(name, "function")
    # As Lambda's CreateFunction validates them.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", function):
        raise ValueError(f"{name}: function name {function!r}: 1-64 letters, digits, - and _")
    if not 1 <= int(state.get("timeout", 3)) <= 900:
        raise ValueError(f"{name}: timeout {state.get('timeout')!r}: 1 to 900 seconds")
    arn = m._arn("lambda", f"function:{function}")
    return function, {"name": function, "arn": arn, "qualifiedArn": f"{arn}:$LATEST",
                      "invokeArn": f"arn:{m.partition}:apigateway:{m.region}:lambda:path/2015-03-31/functions/{arn}/invocations"}


def _sqs_queue(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    queue = state.get("name") or m._autoname(name, "queue")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}(\.fifo)?", queue):
        raise ValueError(f"{name}: queue name {queue!r}: 1-80 letters, digits, - and _")
    url = f"https://sqs.{m.region}.amazonaws.com/{m.account_id}/{queue}"
    return url, {"name": queue, "url": url, "arn": m._arn("sqs", queue)}


def _schedule(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    schedule = state.get("name") or m._autoname(name, "schedule")
    group = state.get("groupName") or "default"
    return f"{group}/{schedule}", {"name": schedule, "groupName": group,
                                   "arn": m._arn("scheduler", f"schedule/{group}/{schedule}")}


def _instance_profile(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    profile = state.get("name") or m._autoname(name, "profile")
    return profile, {"name": profile, "arn": m._arn("iam", f"instance-profile/{profile}", region=False)}


def _secret(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    secret = state.get("name") or m._autoname(name, "secret")
    # Secrets Manager appends six random characters to a secret's ARN.
    arn = m._arn("secretsmanager", f"secret:{secret}-{m._hex('secret', name, length=6)}")
    return arn, {"name": secret, "arn": arn}


def _ec2_instance(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    instance_id = f"i-{m._hex('instance', name)}"
    return instance_id, {"id": instance_id, "arn": m._arn("ec2", f"instance/{instance_id}"),
                         "privateIp": state.get("privateIp") or "10.0.0.10", "instanceState": "running"}


def _metric_alarm(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    alarm = state.get("name") or m._autoname(name, "alarm")
    return alarm, {"name": alarm, "arn": m._arn("cloudwatch", f"alarm:{alarm}")}


def _imagebuilder(kind: str) -> Handler:
    def handle(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        arn = m._arn("imagebuilder", f"{kind}/{state.get('name') or name}/{state.get('version') or '1.0.0'}")
        return arn, {"arn": arn}
    return handle


def _image(m: FleetMocks, name: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An Image Builder image: built during the deployment; its output is the AMI it distributed."""
    arn = m._arn("imagebuilder", f"image/{name}/1.0.0/1")
    ami = {"image": f"ami-{m._hex('ami', name)}", "region": m.region, "accountId": m.account_id,
           "name": name, "description": ""}
    return arn, {"arn": arn, "outputResources": [{"amis": [ami], "containers": []}]}


_COMPONENT_HANDLERS: dict[str, Handler] = {"eks:index:Cluster": _eks_cluster}
"""Remote components (multi-language): the engine sees them, their children stay invisible."""

_HANDLERS: dict[str, Handler] = {
    "pulumi:providers:aws": _provider,
    "aws:ec2/vpc:Vpc": _ec2("vpc", "vpc"),
    "aws:ec2/subnet:Subnet": _subnet,
    "aws:ec2/internetGateway:InternetGateway": _ec2("igw", "internet-gateway"),
    "aws:ec2/routeTable:RouteTable": _ec2("rtb", "route-table"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _ec2("rtbassoc"),
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/natGateway:NatGateway": _ec2("nat", "natgateway"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _vpc_endpoint,
    "aws:ec2/securityGroup:SecurityGroup": _ec2("sg", "security-group"),
    "aws:ec2/flowLog:FlowLog": _ec2("fl", "vpc-flow-log"),
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:ec2/placementGroup:PlacementGroup": _placement_group,
    "aws:ec2/capacityReservation:CapacityReservation": _capacity_reservation,
    "aws:kms/key:Key": _kms_key,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:iam/role:Role": _iam_role,
    "aws:iam/rolePolicy:RolePolicy": _role_policy,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _bucket_child,
    "aws:s3/bucketVersioning:BucketVersioning": _bucket_child,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _bucket_child,
    "aws:s3/bucketPolicy:BucketPolicy": _bucket_child,
    "aws:fsx/lustreFileSystem:LustreFileSystem": _lustre,
    "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation": _dra,
    "aws:ram/resourceShare:ResourceShare": _resource_share,
    "aws:ram/resourceAssociation:ResourceAssociation": _ram_association("resourceArn"),
    "aws:ram/principalAssociation:PrincipalAssociation": _ram_association("principal"),
    "aws:dynamodb/table:Table": _dynamodb_table,
    "aws:autoscaling/group:Group": _asg,
    "aws:eks/nodeGroup:NodeGroup": _eks_node_group,
    "aws:eks/addon:Addon": _eks_addon,
    "aws:amp/workspace:Workspace": _amp_workspace,
    "aws:amp/ruleGroupNamespace:RuleGroupNamespace": _amp_namespace,
    "aws:grafana/workspace:Workspace": _grafana_workspace,
    "aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount": _grafana_service_account,
    "aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken": _grafana_token,
    "aws:sns/topic:Topic": _sns_topic,
    "aws:iam/instanceProfile:InstanceProfile": _instance_profile,
    "aws:lambda/function:Function": _lambda_function,
    "aws:sqs/queue:Queue": _sqs_queue,
    "aws:scheduler/schedule:Schedule": _schedule,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _metric_alarm,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:ec2/instance:Instance": _ec2_instance,
    "pulumi:providers:kubernetes": _provider,
    "aws:imagebuilder/component:Component": _imagebuilder("component"),
    "aws:imagebuilder/imageRecipe:ImageRecipe": _imagebuilder("image-recipe"),
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration":
        _imagebuilder("infrastructure-configuration"),
    "aws:imagebuilder/distributionConfiguration:DistributionConfiguration": _imagebuilder("distribution-configuration"),
    "aws:imagebuilder/imagePipeline:ImagePipeline": _imagebuilder("image-pipeline"),
    "aws:imagebuilder/image:Image": _image,
}

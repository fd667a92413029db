"""Apply the rendered Pulumi program into the emulated AWS, as ``pulumi up`` would, for what the
automation reads (the create calls of each type: automation/sandbox/provider_calls.py).

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
- ``aws:amp/workspace:Workspace``: alias, key, tags, then its logging configuration; an empty
  workspace whose query API the extension answers (automation/sandbox/prometheus_api.py);
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
CloudTrail, AWS Config, S3 buckets and their settings and objects, CloudWatch log groups, metric
filters and alarms, SNS topics, flow logs, security groups (the VPC's default one too), internet and
NAT gateways, Elastic IPs, route tables, VPC endpoints, the Slurm head instance, Secrets Manager, FSx for Lustre, Managed Prometheus's
rule namespaces and Alertmanager definition, Grafana (the workspace, its service account and token, and the dashboards and data sources in it), the EKS cluster (a remote component), its add-ons, pod identities and Kubernetes objects,
EKS node groups no stack exports (the system node group), the node images (Image Builder) and
their SSM parameters, the scheduler function, its schedule and dead-letter queue (the sandbox runs the
pass with `gpufleet schedule run`), and providers. Exports that name a skipped
resource keep their rendered values; launch templates keep the rendered ids of the security groups
and KMS keys they name.

moto gaps. Taught to the emulator extension, as AWS documents them: AssociateResourceShare (RAM;
moto has none), AWS managed policies in every account (moto loads none by default, so
AttachRolePolicy failed), a reservation's EbsOptimized and EphemeralStorage (capacity.py kept
neither). Left as they are, since the automation reads none of it: moto launches instances with one
network interface, its own default metadata options and no EFA (the template holds every rendered
setting; the identity test reads the template, not the instances), and files a template's own tags
into its data. EKS would launch a copy of the launch template with its AMI (``eks-<uuid>``); the
sandbox's group launches the template itself.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3

from gpufleet.automation.sandbox.accounts import Account
from gpufleet.automation.sandbox.api_params import UnappliedInput
from gpufleet.automation.sandbox.id_map import IdMap
from gpufleet.automation.sandbox.provider_calls import HANDLERS, SERVICE_OF, eks_asg_name
from gpufleet.infra.rendered import RenderedResource, RenderedStack
from gpufleet.infra.stackfile import Role

ORDER = tuple(HANDLERS)
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
    "aws:cloudwatch/logMetricFilter:LogMetricFilter", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
    "aws:sns/topic:Topic", "aws:sns/topicPolicy:TopicPolicy", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ec2/instance:Instance", "aws:secretsmanager/secret:Secret",
    "aws:fsx/lustreFileSystem:LustreFileSystem", "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation",
    "aws:amp/ruleGroupNamespace:RuleGroupNamespace",
    "aws:amp/alertManagerDefinition:AlertManagerDefinition", "aws:grafana/workspace:Workspace",
    "aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount",
    "aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken", "pulumi:providers:grafana",
    "aws:eks/addon:Addon", "aws:eks/podIdentityAssociation:PodIdentityAssociation",
    "aws:imagebuilder/component:Component", "aws:imagebuilder/imageRecipe:ImageRecipe",
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration",
    "aws:imagebuilder/distributionConfiguration:DistributionConfiguration",
    "aws:imagebuilder/imagePipeline:ImagePipeline", "aws:imagebuilder/image:Image", "aws:ssm/parameter:Parameter",
    "aws:ram/resourceShareAccepter:ResourceShareAccepter",
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
    "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate", "aws:ecr/repository:Repository",
    "aws:ecr/repositoryPolicy:RepositoryPolicy", "aws:ecr/registryPolicy:RegistryPolicy",
    # The scheduler function: the sandbox runs the same pass with `gpufleet schedule run`.
    "aws:lambda/function:Function", "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
    "aws:scheduler/schedule:Schedule", "aws:sqs/queue:Queue",
})
"""Types the automation reads nothing of (see the module docstring); Kubernetes objects too."""


class ApplyError(RuntimeError):
    """A rendered resource the sandbox could not apply; names the stack and URN."""


def is_skipped(type_token: str) -> bool:
    return type_token in SKIPPED or type_token.startswith(("kubernetes:", "gpufleet:", "grafana:"))


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


class Applier:
    """Applies rendered stacks into one emulator endpoint; ``progress`` gets a line per stack."""

    def __init__(self, endpoint: str, credentials: tuple[str, str],
                 progress: Callable[[str], None] | None = None) -> None:
        self.endpoint = endpoint
        self.base = _base_session(credentials)
        self.progress = progress or (lambda _line: None)

    def _account(self, stack: RenderedStack) -> Account:
        services = {SERVICE_OF[r.type.split(":")[1].split("/")[0]] for r in stack.resources if r.type in HANDLERS}
        return Account(self.base, self.endpoint, stack, services)

    def apply(self, stacks: Sequence[RenderedStack]) -> AppliedFleet:
        fleet = AppliedFleet(ids=IdMap(), exports={})
        platforms = [s for s in stacks if s.spec.role is Role.PLATFORM]
        consumers = sorted((s for s in stacks if s.spec.role is not Role.PLATFORM), key=lambda s: s.spec.name)
        for stack in platforms:
            self._apply_stack(fleet, stack, self._account(stack))
        accounts = [(stack, self._account(stack)) for stack in consumers]
        if accounts:
            with ThreadPoolExecutor(max_workers=len(accounts), thread_name_prefix="gpufleet-apply") as pool:
                for done in [pool.submit(self._apply_stack, fleet, stack, account) for stack, account in accounts]:
                    done.result()
        fleet.exports = {s.spec.name: fleet.ids.substitute(dict(s.exports)) for s in stacks}
        return fleet

    def _apply_stack(self, fleet: AppliedFleet, stack: RenderedStack, account: Account) -> None:
        began = time.monotonic()
        exported_asgs = {g.get("asgName") for g in stack.exports.get("nodeGroups") or ()}
        by_type: dict[str, list[RenderedResource]] = {}
        skipped: Counter[str] = Counter()
        for resource in stack.resources:
            if resource.type in HANDLERS:
                if resource.type == "aws:eks/nodeGroup:NodeGroup" and eks_asg_name(resource) not in exported_asgs:
                    skipped[resource.type] += 1
                    continue
                by_type.setdefault(resource.type, []).append(resource)
            elif is_skipped(resource.type):
                skipped[resource.type] += 1
            else:
                raise ApplyError(f"{stack.spec.name}: {resource.urn}: type {resource.type} is neither applied nor "
                                 "listed as skipped in gpufleet/automation/sandbox/apply.py")
        applied = fleet.applied.setdefault(stack.spec.name, {})
        for type_token in ORDER:
            for resource in by_type.get(type_token, ()):
                try:
                    applied[resource.urn] = HANDLERS[type_token](account, resource, fleet.ids)
                except UnappliedInput:
                    raise
                except Exception as err:  # noqa: BLE001 (re-raised naming the resource)
                    raise ApplyError(f"{stack.spec.name}: applying {resource.urn} failed: {err}") from err
        fleet.skipped[stack.spec.name] = skipped
        self.progress(f"{stack.spec.name}: account {account.account_id} (as {account.role_name}): "
                      f"{len(applied)} resources applied, {sum(skipped.values())} skipped, "
                      f"{time.monotonic() - began:.2f} s")

"""Which AWS services each node role and controller calls, and so which interface endpoints a VPC
without a NAT path needs. Pure data: no pulumi import.

The program renders a stack's interface endpoints from :data:`CALLS` (infra/network.py), and the
guardrail ``vpc.endpoints-without-nat`` reads the same table against the rendered graph: in a
stack without a NAT path, every service one of its callers calls has an endpoint.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.infra.model import ClusterKind

__all__ = ["CALLS", "Call", "Caller", "Evidence", "GATEWAY_SERVICES", "POLICY_SERVICES", "callers_of", "services_of"]


class Caller(enum.StrEnum):
    """Something running in a consumer VPC that calls AWS APIs."""

    EKS_NODE = "eks-node"
    """kubelet, nodeadm and the VPC CNI on every EKS node (system and GPU)."""
    POD_IDENTITY_AGENT = "pod-identity-agent"
    """The EKS Pod Identity agent, exchanging a pod's service-account token for role credentials."""
    METRICS_COLLECTOR = "metrics-collector"
    """The in-cluster Prometheus: assumes the platform's remote-write role, remote-writes."""
    SLURM_NODE = "slurm-node"
    """A Slurm compute node's bootstrap: the lifecycle bundle and the munge key."""
    SLURM_HEAD = "slurm-head"
    """The Slurm head: the bundle, and it writes the munge key first."""
    SESSION_MANAGER = "session-manager"
    """The SSM agent on nodes whose role allows Session Manager (never in a PHI account)."""
    HEALTH_PROBE = "health-probe"
    """The GPU health probe: runs through the orchestrator (a Kubernetes Job, or srun); calls no AWS API."""
    SLURM_HEALER = "slurm-healer"
    """A training Slurm head's healer (gpufleet-healer.service, ``--identity instance``) as the head's
    instance role: it assumes this account's operator role and the platform's healer journal role."""
    EKS_HEALER = "eks-healer"
    """A training EKS cluster's healer Deployment, as its Pod Identity role: the same two roles."""
    HEALER_SSM_PROBE = "healer-ssm-probe"
    """The Slurm healer's gate through SSM Run Command (its default probe), where SSM is allowed:
    never in a PHI account."""


@dataclass(frozen=True, kw_only=True)
class Call:
    """One AWS service a caller needs, and why."""

    service: str
    """Endpoint service suffix (``com.amazonaws.<region>.<service>``)."""
    reason: str
    """What the caller does with it."""


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """What in a rendered stack shows that a caller runs there (for the guardrail)."""

    type: str
    """Pulumi type token of a resource that implies the caller."""
    prop: str = ""
    """Optional input property that must end with ``suffix``."""
    suffix: str = ""


HEALER_CALLS: tuple[Call, ...] = (
    Call(service="sts", reason="assumes the operator role and the platform's gpufleet-healer-journal role"),
    Call(service="autoscaling", reason="reads its groups, terminates a node without lowering desired capacity, "
                                       "launches spares (DescribeAutoScalingGroups, "
                                       "TerminateInstanceInAutoScalingGroup, SetDesiredCapacity)"),
    Call(service="ec2", reason="instance status checks (DescribeInstanceStatus), DescribeInstances, and the pool's "
                               "shared reservation before a spare (DescribeCapacityReservations)"),
    Call(service="dynamodb", reason="the journal and the pool leases, a table in the platform account"),
)
"""What either healer calls, wherever it runs (the head's service, the EKS Deployment)."""

CALLS: dict[Caller, tuple[Call, ...]] = {
    Caller.EKS_NODE: (
        Call(service="eks", reason="nodeadm reads the cluster (DescribeCluster) to join"),
        Call(service="ec2", reason="VPC CNI assigns pod IPs and ENIs (AssignPrivateIpAddresses, "
                                   "AttachNetworkInterface, DescribeNetworkInterfaces)"),
        Call(service="ecr.api", reason="kubelet's credential provider gets registry tokens (GetAuthorizationToken)"),
        Call(service="ecr.dkr", reason="container image manifests (pull-through cache included)"),
        Call(service="s3", reason="image layers live in ECR's S3 buckets"),
    ),
    Caller.POD_IDENTITY_AGENT: (
        Call(service="eks-auth", reason="AssumeRoleForPodIdentity for every pod with an association"),
    ),
    Caller.METRICS_COLLECTOR: (
        Call(service="sts", reason="AssumeRole of the platform's remote-write role (regional endpoint)"),
        Call(service="aps-workspaces", reason="RemoteWrite to the platform's workspace"),
    ),
    Caller.SLURM_NODE: (
        Call(service="s3", reason="the lifecycle bundle (aws s3 cp)"),
        Call(service="secretsmanager", reason="reads the munge key (GetSecretValue)"),
    ),
    Caller.SLURM_HEAD: (
        Call(service="s3", reason="the lifecycle bundle (aws s3 cp)"),
        Call(service="secretsmanager", reason="writes the munge key on first boot (PutSecretValue)"),
        Call(service="sts", reason="the head's metrics collector assumes the platform's remote-write role"),
        Call(service="aps-workspaces", reason="the head's metrics collector remote-writes the Slurm nodes' metrics"),
    ),
    Caller.SESSION_MANAGER: (
        Call(service="ssm", reason="the SSM agent registers and polls"),
        Call(service="ssmmessages", reason="Session Manager's data channel"),
        Call(service="ec2messages", reason="the SSM agent's message delivery"),
    ),
    Caller.HEALTH_PROBE: (),
    Caller.SLURM_HEALER: HEALER_CALLS,
    Caller.EKS_HEALER: (
        Call(service="eks-auth", reason="its Pod Identity credentials (AssumeRoleForPodIdentity)"),
        *HEALER_CALLS,
    ),
    Caller.HEALER_SSM_PROBE: (
        Call(service="ssm", reason="the gate's probe on a newcomer (SendCommand, GetCommandInvocation)"),
    ),
}
"""Caller -> the services it calls. A new caller, or a new call, is a row here first."""

EVIDENCE: dict[Caller, tuple[Evidence, ...]] = {
    Caller.EKS_NODE: (Evidence(type="aws:eks/nodeGroup:NodeGroup"),),
    Caller.POD_IDENTITY_AGENT: (Evidence(type="aws:eks/podIdentityAssociation:PodIdentityAssociation"),),
    Caller.METRICS_COLLECTOR: (Evidence(type="aws:eks/podIdentityAssociation:PodIdentityAssociation"),),
    Caller.SLURM_NODE: (Evidence(type="aws:autoscaling/group:Group"),),  # EKS makes its own groups
    Caller.SLURM_HEAD: (Evidence(type="aws:ec2/instance:Instance"),),
    Caller.SESSION_MANAGER: (Evidence(type="aws:iam/rolePolicyAttachment:RolePolicyAttachment", prop="policyArn",
                                      suffix="/AmazonSSMManagedInstanceCore"),),
    Caller.HEALTH_PROBE: (),
    # The head runs the healer from its archive in the bundle (lifecycle/bootstrap/steps/75-healer.sh).
    Caller.SLURM_HEALER: (Evidence(type="aws:s3/bucketObjectv2:BucketObjectv2", prop="key",
                                   suffix="/healer/gpufleet/automation/heal/__main__.py"),),
    Caller.EKS_HEALER: (Evidence(type="aws:eks/podIdentityAssociation:PodIdentityAssociation", prop="serviceAccount",
                                 suffix="gpufleet-healer"),),
    # Run Command reaches only instances whose SSM agent may register (the managed policy).
    Caller.HEALER_SSM_PROBE: (Evidence(type="aws:iam/rolePolicyAttachment:RolePolicyAttachment", prop="policyArn",
                                       suffix="/AmazonSSMManagedInstanceCore"),),
}
"""Caller -> what in a rendered stack implies it runs there."""

GATEWAY_SERVICES = frozenset({"s3", "dynamodb"})
"""Served by a gateway endpoint on the route tables (no interface endpoint, no cost per AZ). A
DynamoDB gateway endpoint reaches the Region's DynamoDB, tables of other accounts included (its
default policy: any principal, any table); it does not reach another Region's, and its policy,
like the caller's IAM policy, must allow the call
(https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-ddb.html)."""
POLICY_SERVICES = frozenset({"ec2", "ecr.api", "ecr.dkr", "sts", "secretsmanager", "ssm", "aps-workspaces", "logs",
                             "autoscaling", "dynamodb"})
"""Interface endpoints that get a policy scoped to the fleet's accounts: services whose endpoint
policies AWS documents (the DynamoDB gateway's too: the journal's principal is the platform's
role). The others (eks, eks-auth, ssmmessages, ec2messages) keep the default
policy; their callers are authenticated as this account's roles anyway."""


def callers_of(cluster_kind: ClusterKind, *, holds_phi: bool, is_platform: bool = False,
               heals: bool = False) -> tuple[Caller, ...]:
    """The callers a stack runs, from its stack file. ``heals``: the stack runs its own healer (a
    training stack's Slurm head, or its EKS cluster's Deployment when an image is named)."""
    if is_platform:
        return ()  # the platform VPC runs no nodes
    callers: list[Caller] = [Caller.HEALTH_PROBE]
    if cluster_kind is ClusterKind.EKS:
        callers += [Caller.EKS_NODE, Caller.POD_IDENTITY_AGENT, Caller.METRICS_COLLECTOR]
        if heals:
            callers.append(Caller.EKS_HEALER)  # it gates through a Kubernetes Job, not SSM
    elif cluster_kind is ClusterKind.SLURM:
        callers += [Caller.SLURM_NODE, Caller.SLURM_HEAD]
        if heals:
            callers.append(Caller.SLURM_HEALER)
            if not holds_phi:
                callers.append(Caller.HEALER_SSM_PROBE)
    if not holds_phi and cluster_kind is not ClusterKind.NONE:
        callers.append(Caller.SESSION_MANAGER)
    return tuple(callers)


def services_of(callers: Iterable[Caller]) -> tuple[str, ...]:
    """Every service the callers call, sorted, once each."""
    return tuple(sorted({call.service for caller in callers for call in CALLS[caller]}))

"""The stack-file model: what one environment's ``stacks/Pulumi.<stack>.yaml`` says, typed.

Pure: no pulumi import. ``gpufleet.infra.stackfile`` is the only producer: it validates every rule
once, naming file, key and value; everything downstream (the ledger, the program, the components,
the plan) takes these objects as valid and does not check them again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    """What a stack is for; each stack lives in its own AWS account."""

    PLATFORM = "platform"
    TRAINING = "training"
    INFERENCE = "inference"


class ClusterKind(enum.StrEnum):
    """Who runs work on a consumer's GPU nodes (and drains them): the node groups' orchestrator."""

    NONE = "none"
    EKS = "eks"
    SLURM = "slurm"


class PoolKind(enum.StrEnum):
    """How a pool's capacity is held."""

    ODCR = "odcr"
    CAPACITY_BLOCK = "capacity-block"
    ON_DEMAND = "on-demand"

    @property
    def is_reserved(self) -> bool:
        return self is not PoolKind.ON_DEMAND


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """Reserved GPU capacity owned by the platform account."""

    name: str
    """Pool name, unique across the fleet; consumers bind to it."""
    instance_type: str
    """EC2 instance type of every node in the pool."""
    az_id: str
    """AZ ID (use1-az4), the same in every account, unlike AZ names."""
    count: int
    """Instances the reservation holds."""
    kind: PoolKind
    """odcr, capacity-block or on-demand."""
    reservation_id: str | None = None
    """Adopt an existing reservation or capacity block instead of creating an ODCR."""
    share_with: tuple[Role, ...] = ()
    """Consumer roles whose accounts get the reservation through RAM."""
    start_time: str | None = None
    """Capacity Blocks: when the block starts (stack-file key ``startTime``, ISO 8601 UTC)."""
    end_time: str | None = None
    """Capacity Blocks: when the block ends (``endTime``; a block ends at 11:30 UTC)."""


@dataclass(frozen=True, kw_only=True)
class NodeGroupSpec:
    """A consumer of a pool: GPU nodes in a training or inference stack."""

    name: str
    """Node group name, unique within the stack."""
    pool: str
    """The platform pool this group draws from."""
    instance_type: str
    """Must equal the pool's instance type."""
    initial_nodes: int
    """The size the group is created with (stack-file key ``initialNodes``). Pulumi sets it once and
    ignores it afterwards: the rebalancer owns the live size."""
    min_nodes: int
    """Lower bound of the group."""
    max_nodes: int
    """Upper bound of the group; at most the pool's count."""
    enable_placement_group: bool = False
    """Put the nodes in a cluster placement group (not with a targeted reservation: see the plan)."""


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """The stack's VPC."""

    cidr: str
    """VPC CIDR block."""
    enable_nat: bool = False
    """One NAT gateway per AZ for egress beyond the VPC endpoints."""


@dataclass(frozen=True, kw_only=True)
class StorageSpec:
    """FSx for Lustre linked to an S3 dataset bucket."""

    fsx_capacity_gib: int
    """1200 or a multiple of 2400 (PERSISTENT_2)."""
    fsx_throughput_per_tib: int
    """MB/s per TiB: 125, 250, 500 or 1000."""
    fsx_import_prefix: str = "datasets/"
    """Bucket prefix the file system imports from and exports to."""
    fsx_mount_path: str = "/fsx"
    """Where nodes mount the file system."""


@dataclass(frozen=True, kw_only=True)
class StackSpec:
    """Everything one environment's stack file says, validated."""

    name: str
    """Stack name (platform, training, inference, ...)."""
    source: str
    """The stack file this came from, for error messages."""
    role: Role
    """What the stack is for (and which keys it may set)."""
    account_id: str
    """The stack's own AWS account (12 digits)."""
    region: str
    """The stack's region (``aws:region``)."""
    deploy_role_arn: str
    """Role Pulumi assumes in the stack's account."""
    az_ids: tuple[str, ...]
    """AZ IDs the stack has subnets in (one private subnet each)."""
    network: NetworkSpec
    """The VPC."""
    cluster_kind: ClusterKind = ClusterKind.NONE
    """Consumers: the cluster the GPU node groups join."""
    holds_phi: bool = False
    """The account holds patient data: the strictest guardrails apply."""
    platform_stack: str = ""
    """Fully qualified name of the platform stack (org/project/stack), read by StackReference."""
    consumer_accounts: Mapping[Role, str] = field(default_factory=dict)
    """Platform only: account id of each consumer role."""
    pools: tuple[PoolSpec, ...] = ()
    """Platform only."""
    node_groups: tuple[NodeGroupSpec, ...] = ()
    """Training and inference only."""
    storage: StorageSpec | None = None
    """Training only: FSx for Lustre + dataset bucket."""
    eks_public_access_cidrs: tuple[str, ...] = ()
    """clusterKind eks, no PHI: CIDRs that may reach the public API endpoint; empty: private only."""

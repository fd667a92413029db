"""The stack-file model: what one environment's ``stacks/Pulumi.<stack>.yaml`` says, typed.

Pure: no pulumi import. ``gpufleet.infra.stackfile`` is the only producer: it validates every rule
once, naming file, key and value; everything downstream (the ledger, the program, the components,
the plan) takes these objects as valid and does not check them again.
"""

from __future__ import annotations

import datetime as dt
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


class RamSharing(enum.StrEnum):
    """How the platform's RAM shares reach the consumer accounts (``gpufleet:ramSharing``)."""

    ORGANIZATION = "organization"
    """Inside one AWS Organization with RAM sharing enabled: no external principals, nothing to accept."""
    INVITATION = "invitation"
    """External principals: each consumer stack accepts its shares (ram.ResourceShareAccepter)."""


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
    price_usd_per_hour: float | None = None
    """Capacity Blocks: the purchase price per instance-hour (the block's upfront fee over its
    instances and hours); None: the instance type's on-demand rate, which is what an ODCR bills."""
    unused_billed_to: Role | None = None
    """The consumer role whose account took billing ownership of the unused capacity (EC2's
    capacity reservation billing assignment); None: the platform account, the owner, pays it."""
    spares: int = 0
    """Hot spares (stack-file key ``spares``): nodes of the pool kept launched, gated and held in
    its training Slurm group, counted as no consumer's; a replacement swaps one in instead of
    booting (docs/heal.md)."""


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
    lent_reservation_id: str | None = None
    """Training only (stack-file key ``lentReservationId``): the group launches into the pool's lent
    slots, the interruptible capacity reservation the platform account made from the pool's ODCR
    (docs/schedule.md, lending), instead of the pool's reservation itself."""


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


class ServingSignal(enum.StrEnum):
    """What a reactive rule watches (vLLM's metrics, averaged over the pool's serving pods)."""

    QUEUE_DEPTH = "queueDepth"
    """``vllm:num_requests_waiting``: requests waiting per serving node."""
    KV_CACHE = "kvCache"
    """``vllm:kv_cache_usage_perc``: KV-cache use, 0 to 1."""


# Stock warm-up of a 70B model on EKS (published: node 1-1.5 min, image 4-5, weights 4-5) plus the
# quick health gate and the join: the default lead time of a move into inference.
DEFAULT_LEAD_TIME_MINUTES = 1.5 + 1 + 2 + 4.5 + 4.5
"""Boot 1.5 + join 1 + quick gate 2 + image pull 4.5 + weights 4.5 minutes (13.5)."""


@dataclass(frozen=True, kw_only=True)
class ScheduleWindow:
    """A recurring time of day when inference needs more nodes (e.g. weekdays 09:00-15:00 Chicago)."""

    days: frozenset[int]
    """Days of the week the window opens on, Monday = 0 (local to ``timezone``)."""
    start: dt.time
    """Local opening time."""
    end: dt.time
    """Local closing time, after ``start`` on the same day."""
    timezone: str
    """IANA time zone (America/Chicago); daylight saving time follows zoneinfo."""
    inference_nodes: int
    """Inference nodes wanted while the window is open."""


@dataclass(frozen=True, kw_only=True)
class ReactiveRule:
    """Scale inference on a serving signal: above ``up_above`` for ``up_minutes`` -> one more step,
    below ``down_below`` for ``down_minutes`` -> one step less; in between, hold (hysteresis)."""

    signal: ServingSignal
    """The metric watched."""
    up_above: float
    """Threshold to scale up."""
    down_below: float
    """Threshold to scale down; below ``up_above``."""
    up_minutes: int
    """Minutes the signal must stay above ``up_above``."""
    down_minutes: int
    """Minutes the signal must stay below ``down_below``."""
    step: int
    """Nodes added or removed per decision."""
    max_nodes: int
    """Inference never grows past this on signals."""


@dataclass(frozen=True, kw_only=True)
class LendRule:
    """Lend the pool's idle inference slots to training outside the windows through an interruptible
    capacity reservation (EC2's lend-and-reclaim primitive; an ODCR without an end date only)."""

    max_nodes: int
    """Slots lent at most (the interruptible allocation's size, and training's lent group's bound)."""


@dataclass(frozen=True, kw_only=True)
class PoolSchedule:
    """How a pool's nodes are split between inference and training over time."""

    pool: str
    """The platform pool (shared with training and inference)."""
    windows: tuple[ScheduleWindow, ...]
    """Recurring windows; where several are open, the largest wins."""
    inference_nodes_outside: int
    """Inference nodes wanted outside every window."""
    training_floor: int
    """Training keeps at least this many nodes of the pool."""
    lead_time_minutes: float = DEFAULT_LEAD_TIME_MINUTES
    """How long before a window opens the move into inference starts."""
    drain_minutes: float = 5.0
    """Checkpoint and drain of a training node before it is released."""
    reactive: ReactiveRule | None = None
    """Optional scaling on serving signals on top of the windows."""
    lend: LendRule | None = None
    """Optional lending of idle inference slots to training (stack-file key ``lend``); None: not lent."""


class HealthProbe(enum.StrEnum):
    """How the health gate reaches a new node of the stack."""

    ORCHESTRATOR = "orchestrator"
    """Where the node lives: a Kubernetes Job pinned to it (EKS) or ``srun`` onto it (Slurm)."""
    SSM = "ssm"
    """SSM Run Command (the account needs SSM's instance role and endpoints; never with PHI)."""


HEALTH_TIERS = ("quick", "performance", "deep")


@dataclass(frozen=True, kw_only=True)
class HealthGateSpec:
    """What a new node of the stack must pass before it serves (``gpufleet:healthGate``)."""

    probe: HealthProbe = HealthProbe.ORCHESTRATOR
    """How the gate runs the checks on the node."""
    tiers: tuple[str, ...] = ("quick",)
    """Health tiers the node must pass (quick, performance, deep)."""
    dcgm_level: int = 2
    """DCGM diagnostics level (1-4) of the deep tier."""
    straggler_fail_pct: int = 20
    """A node this many percent or more below its pool's median GEMM or bus bandwidth fails the gate."""


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
    ram_sharing: RamSharing = RamSharing.ORGANIZATION
    """How pool shares reach consumers; every stack of a fleet says the same (check_fleet)."""
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
    schedule: tuple[PoolSchedule, ...] = ()
    """Platform only: the capacity schedule per pool (``gpufleet:schedule``)."""
    health_gate: HealthGateSpec = field(default_factory=HealthGateSpec)
    """Consumers: the health gate of new nodes."""
    healer_image: str = ""
    """Training on EKS: the healer Deployment's image, in this account's ``gpufleet/healer``
    repository (``gpufleet:healerImage``); empty: no Deployment yet."""

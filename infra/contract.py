"""The stack-output contract: what each stack exports, typed and versioned.

The Pulumi program writes its exports through these classes (``StackOutputs.to_dict``); every
reader (``gpufleet inventory collect``, status, rebalance, health, the sandbox, and what comes
after them) reads them back through ``StackOutputs.from_dict``, which checks every key and names
the stack and key of anything malformed. One writer, one reader, one shape.

Pure: no pulumi import. While the program runs, fields hold ``pulumi.Input`` values (the engine
resolves them on export); read back, they hold plain values.

Keys are camelCase in the exports (``asgName``), snake_case here (``asg_name``). ``version`` is the
contract's version: a reader refuses outputs written by a newer contract, and every later change
that a reader of an older version could misread bumps it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufleet.infra.errors import ConfigError

CONTRACT_VERSION = 2


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True, kw_only=True)
class PoolOutput:
    """A capacity pool the platform stack owns (an ODCR, a Capacity Block or plain on-demand)."""

    name: str
    """Pool name, unique across the fleet."""
    instance_type: str
    """EC2 instance type of every node in the pool."""
    az_id: str
    """AZ ID (use1-az4): the same in every account."""
    kind: str
    """odcr | capacity-block | on-demand."""
    count: int
    """Instances the reservation holds (as declared; ``gpufleet status`` reads the live count)."""
    reservation_id: str | None = None
    """Capacity reservation id (cr-...); None for on-demand pools."""
    reservation_arn: str | None = None
    """Its ARN (the RAM share names it)."""
    share_arn: str | None = None
    """The pool's RAM resource share (None when shared with nobody); consumers accept it by
    invitation (``ramSharing: invitation``)."""
    start_time: str | None = None
    """Capacity Blocks: when the block starts (ISO 8601, UTC)."""
    end_time: str | None = None
    """Capacity Blocks: when the block ends (ISO 8601, UTC); EC2 terminates its instances from 30
    minutes before."""
    price_usd_per_hour: float | None = None
    """Capacity Blocks: the purchase price per instance-hour; None: the on-demand rate."""
    unused_billed_to: str | None = None
    """The consumer role billed for the unused capacity; None: the platform account (the owner)."""
    unused_billing_owner_id: str | None = None
    """That role's account id (EC2's ``UnusedReservationBillingOwnerId``)."""
    spares: int = 0
    """Hot spares the pool keeps (held in its training Slurm group, no consumer's)."""


@dataclass(frozen=True, kw_only=True)
class NodeGroupOutput:
    """A GPU node group of a consumer stack, as AWS really built it."""

    name: str
    """Node group name from the stack file, unique within the stack."""
    pool: str
    """The platform pool it draws from."""
    instance_type: str
    """Equals the pool's instance type."""
    asg_name: str
    """The Auto Scaling group's real name (for an EKS managed node group: the one EKS created)."""
    asg_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags on that Auto Scaling group as AWS puts them (IAM conditions match these)."""
    min_nodes: int
    """Lower bound of the group."""
    max_nodes: int
    """Upper bound of the group."""
    initial_nodes: int
    """The size the stack file creates the group with; the rebalancer owns the live size after."""
    orchestrator: str
    """slurm | eks | none: who runs work on the nodes (and drains them)."""
    cluster: str | None = None
    """Name of the cluster the nodes join; None for orchestrator none."""
    lent_reservation_id: str | None = None
    """Training groups in a pool's lent slots: the interruptible reservation they launch into
    (docs/schedule.md, lending); None: the pool's reservation."""


@dataclass(frozen=True, kw_only=True)
class ClusterOutput:
    """The stack's cluster (EKS or Slurm)."""

    kind: str
    """eks | slurm."""
    name: str
    """Cluster name (EKS) or ClusterName (slurm.conf)."""
    endpoint: str | None = None
    """EKS: the API server URL; Slurm: the head node's address."""
    endpoint_access: str | None = None
    """EKS: private | public-and-private."""
    node_role_arn: str | None = None
    """EKS: the IAM role of the nodes."""
    head_instance_id: str | None = None
    """Slurm: the head node's instance."""
    head_address: str | None = None
    """Slurm: slurmctld's fixed private address."""
    bucket_name: str | None = None
    """Slurm: the bucket holding the lifecycle bundle."""
    bundle_version: str | None = None
    """Slurm: the lifecycle bundle's version (a digest of its files)."""
    munge_secret_arn: str | None = None
    """Slurm: the Secrets Manager secret holding the munge key."""
    partitions: tuple[str, ...] = ()
    """Slurm: one partition per node group."""


@dataclass(frozen=True, kw_only=True)
class StorageOutput:
    """FSx for Lustre linked to an S3 dataset bucket (training)."""

    file_system_id: str
    dns_name: str
    mount_name: str
    mount_path: str
    bucket_name: str


@dataclass(frozen=True, kw_only=True)
class MonitoringOutput:
    """The central Prometheus, Grafana and alerting in the platform account."""

    workspace_id: str
    remote_write_url: str
    remote_write_role_arn: str
    """The role consumers' collectors assume to remote-write."""
    alerts_topic_arn: str | None = None
    grafana_endpoint: str | None = None
    grafana_workspace_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class NodeImageOutput:
    """A gpufleet node image the platform baked and shares with the consumer accounts."""

    kind: str
    """eks | slurm: the cluster kind whose nodes boot it."""
    ami_id: str
    """The AMI (ami-...), launchable by every consumer account."""
    version: str
    """Digest of what the image bakes (infra/node_image_plan.py)."""
    parameter_name: str
    """SSM parameter holding ``ami_id`` (in the platform, and copied into each consumer)."""


@dataclass(frozen=True, kw_only=True)
class MetricsOutput:
    """A consumer's metrics forwarding."""

    collector_role_arn: str
    alarms_topic_arn: str | None = None


@dataclass(frozen=True, kw_only=True)
class HealthGateOutput:
    """A consumer's health gate of new nodes (the stack file's ``gpufleet:healthGate``)."""

    probe: str
    """orchestrator (a Kubernetes Job on the node, or srun onto it) | ssm."""
    tiers: tuple[str, ...]
    """Tiers a new node must pass."""
    dcgm_level: int
    """DCGM diagnostics level of the deep tier."""
    straggler_fail_pct: int
    """A node this many percent below its pool's median GEMM or bus bandwidth fails."""
    ssm_allowed: bool
    """False where the account forbids SSM (it holds PHI): an ``ssm`` probe is refused."""


@dataclass(frozen=True, kw_only=True)
class StackOutputs:
    """Everything one stack exports. Fields of other roles stay at their defaults."""

    version: int = CONTRACT_VERSION
    """The contract's version (``CONTRACT_VERSION`` of the program that wrote it)."""
    role: str
    """platform | training | inference."""
    account_id: str
    region: str
    vpc_id: str | None = None
    private_subnet_ids: Mapping[str, str] = field(default_factory=dict)
    """AZ ID -> private subnet."""
    operator_role_arn: str | None = None
    """Consumers: the role the automation assumes in this account (trusts only the platform's
    automation role)."""
    external_id: str | None = None
    """Consumers: the external id that role requires."""
    automation_role_arn: str | None = None
    """Platform: the one principal the consumers' operator roles trust."""
    release_bucket: str | None = None
    """Platform: model artifacts, training -> inference."""
    journal_table: str | None = None
    """Platform: the DynamoDB journal of every move and lease."""
    ram_sharing: str | None = None
    """Platform: how its RAM shares reach consumers (organization | invitation)."""
    pools: tuple[PoolOutput, ...] = ()
    """Platform: the capacity pools."""
    monitoring: MonitoringOutput | None = None
    """Platform: the central monitoring."""
    node_images: tuple[NodeImageOutput, ...] = ()
    """Platform: the node images (one per cluster kind)."""
    node_groups: tuple[NodeGroupOutput, ...] = ()
    """Consumers: the GPU node groups."""
    cluster: ClusterOutput | None = None
    """Consumers with clusterKind eks or slurm."""
    storage: StorageOutput | None = None
    """Training with storage."""
    metrics: MetricsOutput | None = None
    """Consumers: metrics forwarding."""
    health_gate: HealthGateOutput | None = None
    """Consumers: how new nodes are gated (None in outputs written before it existed: the defaults)."""

    def to_dict(self) -> dict[str, Any]:
        """The exports, camelCase keys (values may be pulumi Inputs while the program runs)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, doc: object, *, stack: str, source: str) -> StackOutputs:
        """Read one stack's exports back; ConfigError names ``source``, ``stacks.<stack>.<key>``."""
        reader = _Reader(source, f"stacks.{stack}")
        if not isinstance(doc, Mapping):
            raise reader.fail("", doc, "expected the stack's outputs as a mapping")
        version = doc.get("version", None)
        if isinstance(version, int) and not isinstance(version, bool) and version > CONTRACT_VERSION:
            raise reader.fail("version", version, f"written by a newer gpufleet (contract v{version}; "
                              f"this one reads v{CONTRACT_VERSION})", "upgrade gpufleet")
        return reader.read(cls, doc, "")

    def pool(self, name: str) -> PoolOutput | None:
        return next((p for p in self.pools if p.name == name), None)

    def node_image(self, kind: str) -> NodeImageOutput | None:
        return next((i for i in self.node_images if i.kind == kind), None)


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {camel(f.name): _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


class _Reader:
    """Checks values against the dataclass annotations; every error names file, key and value."""

    def __init__(self, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, value: object, problem: str, hint: str | None = None) -> ConfigError:
        where = f"{self.prefix}.{key}" if key else self.prefix
        return ConfigError(self.source, where, value, problem, hint)

    def read(self, cls: type, doc: Mapping[str, Any], key: str) -> Any:
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            name = camel(f.name)
            here = f"{key}.{name}" if key else name
            if name not in doc or doc[name] is None:
                has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                if not has_default:
                    raise self.fail(here, None, "missing stack output",
                                    "run `pulumi up` on the stack with this gpufleet, then collect again")
                continue
            values[f.name] = self.value(hints[f.name], doc[name], here)
        return cls(**values)

    def value(self, hint: Any, value: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            return self.value(options[0], value, key)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise self.fail(key, value, "expected a mapping")
            return self.read(hint, value, key)
        if origin is tuple:
            (item,) = typing.get_args(hint)[:1]
            if not isinstance(value, list | tuple):
                raise self.fail(key, value, "expected a list")
            return tuple(self.value(item, v, f"{key}[{i}]") for i, v in enumerate(value))
        if origin in (Mapping, dict) or hint is Mapping:
            if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in value.items()):
                raise self.fail(key, value, "expected a mapping of strings to strings")
            return dict(value)
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(key, value, "expected true or false")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
                raise self.fail(key, value, "expected an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(key, value, "expected a number")
            return float(value)
        if hint is str:
            if not isinstance(value, str) or not value:
                raise self.fail(key, value, "expected a non-empty string")
            return value
        raise TypeError(f"contract field type {hint!r} at {key} is not supported")


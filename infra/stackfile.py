"""Typed loader for ``stacks/Pulumi.<stack>.yaml``.

Pulumi's project schema can only type scalars and arrays, so the structured parts (pools, node
groups, storage) are validated here. Every error names the stack file, the key and the value.
Pure: no pulumi import.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.infra import catalog
from gpufleet.infra.errors import ConfigError

NS = "gpufleet"
ACCOUNT_ID = re.compile(r"^\d{12}$")
AZ_ID = re.compile(r"^[a-z]{2,5}\d{1,2}-az\d{1,2}$")
AZ_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{8,17}$")

FSX_THROUGHPUT_PER_TIB = (125, 250, 500, 1000)


class Role(enum.StrEnum):
    """What a stack is for; each stack lives in its own AWS account."""

    PLATFORM = "platform"
    TRAINING = "training"
    INFERENCE = "inference"


class ClusterKind(enum.StrEnum):
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


@dataclass(frozen=True, kw_only=True)
class NodeGroupSpec:
    """A consumer of a pool: GPU nodes in a training or inference stack."""

    name: str
    """Node group name, unique within the stack."""
    pool: str
    """The platform pool this group draws from."""
    instance_type: str
    """Must equal the pool's instance type."""
    num_nodes: int
    """Initial desired size; the rebalancer owns it after creation."""
    min_nodes: int
    """Lower bound of the group."""
    max_nodes: int
    """Upper bound of the group; at most the pool's count."""
    enable_placement_group: bool = False
    """Put the nodes in a cluster placement group (not with a targeted reservation: see the plan)."""


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
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
    account_id: str
    region: str
    deploy_role_arn: str
    """Role Pulumi assumes in the stack's account."""
    az_ids: tuple[str, ...]
    network: NetworkSpec
    cluster_kind: ClusterKind = ClusterKind.NONE
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

    def key_of(self, short: str) -> str:
        return f"{NS}:{short}"


# Keys each role may set; every stack sets the common ones.
COMMON_KEYS = {"role", "accountId", "deployRoleArn", "azIds", "network", "clusterKind", "holdsPhi"}
ROLE_KEYS = {
    Role.PLATFORM: {"consumerAccounts", "pools"},
    Role.TRAINING: {"platformStack", "nodeGroups", "storage", "eksPublicAccessCidrs"},
    Role.INFERENCE: {"platformStack", "nodeGroups", "eksPublicAccessCidrs"},
}
ALL_KEYS = COMMON_KEYS.union(*ROLE_KEYS.values())


class _Reader:
    """Reads typed values out of one stack file, naming file and key in every error."""

    def __init__(self, raw: Mapping[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def fail(self, key: str, value: object, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(self.source, key, value, problem, hint)

    def get(self, short: str, default: object = ..., ns: str = NS) -> Any:
        key = f"{ns}:{short}"
        if key in self.raw:
            return self.raw[key]
        if default is ...:
            raise self.fail(key, None, "required key is missing", f"add `{key}:` under `config:`")
        return default

    def string(self, key: str, value: object, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, "expected a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, value, f"not a valid {what or 'value'}")
        return value

    def integer(self, key: str, value: object, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, "expected an integer")
        if value < minimum:
            raise self.fail(key, value, f"must be at least {minimum}")
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "expected true or false")
        return value

    def mapping(self, key: str, value: object) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, value, "expected a mapping")
        return value

    def sequence(self, key: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(key, value, "expected a list")
        return value

    def enum(self, key: str, value: object, kind: type[enum.StrEnum]) -> Any:
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(key, value, f"expected one of: {allowed}") from None

    def fields(self, key: str, obj: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
        for name in obj:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), sorted(allowed), n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(sorted(allowed))}"
                raise self.fail(f"{key}.{name}", obj[name], "unknown field", hint)
        for name in sorted(required - set(obj)):
            raise self.fail(f"{key}.{name}", None, "required field is missing")

    def account_id(self, key: str, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.fail(key, value, "account ids must be quoted strings (YAML drops leading zeros)")
        return self.string(key, value, ACCOUNT_ID, "12-digit AWS account id")

    def az_id(self, key: str, value: object) -> str:
        if isinstance(value, str) and AZ_NAME.match(value):
            raise self.fail(key, value, "this is an AZ name; AZ IDs are expected (names differ per account)",
                            "run `aws ec2 describe-availability-zones` in the account and use ZoneId, e.g. use1-az4")
        return self.string(key, value, AZ_ID, "AZ ID (e.g. use1-az4)")

    def instance_type(self, key: str, value: object) -> str:
        name = self.string(key, value)
        try:
            catalog.lookup(name)
        except catalog.UnknownInstanceTypeError as err:
            raise self.fail(key, value, "unknown instance type",
                            f"known: {', '.join(catalog.known_instance_types())}") from err
        return name


def parse_stack(raw: Mapping[str, Any], *, name: str, source: str) -> StackSpec:
    """Validate the ``config:`` mapping of one stack file into a StackSpec."""
    r = _Reader(raw, source)
    for key in raw:
        ns, _, short = str(key).partition(":")
        if ns == NS and short not in ALL_KEYS:
            close = difflib.get_close_matches(short, sorted(ALL_KEYS), n=1)
            raise r.fail(str(key), raw[key], "unknown key", f"did you mean `{NS}:{close[0]}`?" if close else None)

    role = r.enum(f"{NS}:role", r.get("role"), Role)
    for key in raw:
        ns, _, short = str(key).partition(":")
        if ns == NS and short not in COMMON_KEYS | ROLE_KEYS[role]:
            raise r.fail(str(key), raw[key], f"not used by a {role} stack")

    account_id = r.account_id(f"{NS}:accountId", r.get("accountId"))
    region = r.string("aws:region", r.get("region", ns="aws"), REGION, "AWS region")
    deploy_role_arn = r.string(f"{NS}:deployRoleArn", r.get("deployRoleArn"), ROLE_ARN, "IAM role ARN")
    arn_account = ROLE_ARN.match(deploy_role_arn).group(1)  # type: ignore[union-attr]
    if arn_account != account_id:
        raise r.fail(f"{NS}:deployRoleArn", deploy_role_arn,
                     f"role is in account {arn_account}, but the stack's accountId is {account_id}")

    az_ids = tuple(r.az_id(f"{NS}:azIds[{i}]", v) for i, v in enumerate(r.sequence(f"{NS}:azIds", r.get("azIds"))))
    if not az_ids:
        raise r.fail(f"{NS}:azIds", [], "at least one AZ ID is required")
    if len(set(az_ids)) != len(az_ids):
        raise r.fail(f"{NS}:azIds", list(az_ids), "AZ IDs repeat")

    network = _network(r, r.mapping(f"{NS}:network", r.get("network")))
    cluster_kind = r.enum(f"{NS}:clusterKind", r.get("clusterKind", "none"), ClusterKind)
    if role is Role.INFERENCE and cluster_kind not in (ClusterKind.EKS, ClusterKind.NONE):
        raise r.fail(f"{NS}:clusterKind", cluster_kind.value, "inference runs on eks")
    holds_phi = r.boolean(f"{NS}:holdsPhi", r.get("holdsPhi", False))

    spec: dict[str, Any] = {}
    if role is Role.PLATFORM:
        spec["consumer_accounts"] = _consumer_accounts(r, account_id)
        spec["pools"] = _pools(r, az_ids, spec["consumer_accounts"])
    else:
        spec["platform_stack"] = r.string(f"{NS}:platformStack", r.get("platformStack"))
        spec["node_groups"] = _node_groups(r)
        if role is Role.TRAINING and f"{NS}:storage" in raw:
            spec["storage"] = _storage(r, r.mapping(f"{NS}:storage", raw[f"{NS}:storage"]))
        if f"{NS}:eksPublicAccessCidrs" in raw:
            spec["eks_public_access_cidrs"] = _public_access_cidrs(r, cluster_kind, holds_phi)
    return StackSpec(
        name=name, source=source, role=role, account_id=account_id, region=region,
        deploy_role_arn=deploy_role_arn, az_ids=az_ids, network=network, cluster_kind=cluster_kind,
        holds_phi=holds_phi, **spec,
    )


def _network(r: _Reader, obj: Mapping[str, Any]) -> NetworkSpec:
    key = f"{NS}:network"
    r.fields(key, obj, {"cidr", "enableNat"}, {"cidr"})
    cidr = r.string(f"{key}.cidr", obj["cidr"])
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError:
        raise r.fail(f"{key}.cidr", cidr, "not an IPv4 CIDR block") from None
    if not 16 <= net.prefixlen <= 24:
        raise r.fail(f"{key}.cidr", cidr, "VPC blocks must be between /16 and /24")
    return NetworkSpec(cidr=cidr, enable_nat=r.boolean(f"{key}.enableNat", obj.get("enableNat", False)))


def _consumer_accounts(r: _Reader, own_account: str) -> dict[Role, str]:
    key = f"{NS}:consumerAccounts"
    obj = r.mapping(key, r.get("consumerAccounts"))
    accounts: dict[Role, str] = {}
    for role_name, account in obj.items():
        role = r.enum(f"{key}.{role_name}", role_name, Role)
        if role is Role.PLATFORM:
            raise r.fail(f"{key}.{role_name}", account, "consumers are training or inference stacks")
        accounts[role] = r.account_id(f"{key}.{role_name}", account)
        if accounts[role] == own_account:
            raise r.fail(f"{key}.{role_name}", account, "a consumer must live in its own account, not the platform's")
    if len(set(accounts.values())) != len(accounts):
        raise r.fail(key, dict(obj), "each consumer needs its own account (HIPAA-style separation)")
    return accounts


def _pools(r: _Reader, az_ids: tuple[str, ...], consumers: Mapping[Role, str]) -> tuple[PoolSpec, ...]:
    pools = []
    seen: set[str] = set()
    for i, obj in enumerate(r.sequence(f"{NS}:pools", r.get("pools"))):
        key = f"{NS}:pools[{i}]"
        obj = r.mapping(key, obj)
        r.fields(key, obj, {"name", "instanceType", "azId", "count", "kind", "reservationId", "shareWith"},
                 {"name", "instanceType", "azId", "count"})
        name = r.string(f"{key}.name", obj["name"], NAME, "name (lowercase letters, digits, dashes)")
        if name in seen:
            raise r.fail(f"{key}.name", name, "pool names must be unique")
        seen.add(name)
        az_id = r.az_id(f"{key}.azId", obj["azId"])
        if az_id not in az_ids:
            raise r.fail(f"{key}.azId", az_id, f"not one of the stack's azIds {list(az_ids)}")
        instance_type = r.instance_type(f"{key}.instanceType", obj["instanceType"])
        if not catalog.lookup(instance_type).is_gpu:
            raise r.fail(f"{key}.instanceType", instance_type, "pools hold GPU or accelerator instances")
        kind = r.enum(f"{key}.kind", obj.get("kind", "odcr"), PoolKind)
        reservation_id = obj.get("reservationId")
        if reservation_id is not None:
            r.string(f"{key}.reservationId", reservation_id, RESERVATION_ID, "capacity reservation id (cr-...)")
        if kind is PoolKind.CAPACITY_BLOCK and reservation_id is None:
            raise r.fail(f"{key}.reservationId", None, "a capacity block is bought outside Pulumi: give its id")
        share = tuple(r.enum(f"{key}.shareWith[{j}]", v, Role)
                      for j, v in enumerate(r.sequence(f"{key}.shareWith", obj.get("shareWith", []))))
        for j, role in enumerate(share):
            if role not in consumers:
                raise r.fail(f"{key}.shareWith[{j}]", role.value, f"no account for {role} in {NS}:consumerAccounts")
        pools.append(PoolSpec(name=name, instance_type=instance_type, az_id=az_id,
                              count=r.integer(f"{key}.count", obj["count"], minimum=1), kind=kind,
                              reservation_id=reservation_id, share_with=share))
    return tuple(pools)


def _public_access_cidrs(r: _Reader, cluster_kind: ClusterKind, holds_phi: bool) -> tuple[str, ...]:
    key = f"{NS}:eksPublicAccessCidrs"
    values = r.sequence(key, r.get("eksPublicAccessCidrs"))
    if values and cluster_kind is not ClusterKind.EKS:
        raise r.fail(key, values, f"only an eks cluster has an API endpoint (clusterKind is {cluster_kind.value})")
    if values and holds_phi:
        raise r.fail(key, values, "a stack that holds PHI keeps its EKS API endpoint private",
                     "remove the key, and reach the endpoint from inside the VPC")
    cidrs = []
    for i, value in enumerate(values):
        cidr = r.string(f"{key}[{i}]", value)
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            raise r.fail(f"{key}[{i}]", cidr, "not a CIDR block") from None
        if net.prefixlen == 0:
            raise r.fail(f"{key}[{i}]", cidr, "opens the API endpoint to the whole internet")
        cidrs.append(cidr)
    return tuple(cidrs)


def _node_groups(r: _Reader) -> tuple[NodeGroupSpec, ...]:
    groups = []
    seen: set[str] = set()
    for i, obj in enumerate(r.sequence(f"{NS}:nodeGroups", r.get("nodeGroups", []))):
        key = f"{NS}:nodeGroups[{i}]"
        obj = r.mapping(key, obj)
        r.fields(key, obj, {"name", "pool", "instanceType", "numNodes", "minNodes", "maxNodes", "enablePlacementGroup"},
                 {"name", "pool", "instanceType", "numNodes"})
        name = r.string(f"{key}.name", obj["name"], NAME, "name (lowercase letters, digits, dashes)")
        if name in seen:
            raise r.fail(f"{key}.name", name, "node group names must be unique in a stack")
        seen.add(name)
        num = r.integer(f"{key}.numNodes", obj["numNodes"])
        low = r.integer(f"{key}.minNodes", obj.get("minNodes", 0))
        high = r.integer(f"{key}.maxNodes", obj.get("maxNodes", num))
        if low > num:
            raise r.fail(f"{key}.minNodes", low, f"greater than numNodes ({num})")
        if high < num:
            raise r.fail(f"{key}.maxNodes", high, f"less than numNodes ({num})")
        groups.append(NodeGroupSpec(
            name=name, pool=r.string(f"{key}.pool", obj["pool"]),
            instance_type=r.instance_type(f"{key}.instanceType", obj["instanceType"]),
            num_nodes=num, min_nodes=low, max_nodes=high,
            enable_placement_group=r.boolean(f"{key}.enablePlacementGroup", obj.get("enablePlacementGroup", False)),
        ))
    return tuple(groups)


def _storage(r: _Reader, obj: Mapping[str, Any]) -> StorageSpec:
    key = f"{NS}:storage"
    r.fields(key, obj, {"fsxCapacityGib", "fsxThroughputPerTib", "fsxImportPrefix", "fsxMountPath"},
             {"fsxCapacityGib", "fsxThroughputPerTib"})
    capacity = r.integer(f"{key}.fsxCapacityGib", obj["fsxCapacityGib"], minimum=1)
    if capacity != 1200 and capacity % 2400 != 0:
        raise r.fail(f"{key}.fsxCapacityGib", capacity, "FSx for Lustre PERSISTENT_2 takes 1200 or a multiple of 2400 GiB")
    throughput = r.integer(f"{key}.fsxThroughputPerTib", obj["fsxThroughputPerTib"], minimum=1)
    if throughput not in FSX_THROUGHPUT_PER_TIB:
        raise r.fail(f"{key}.fsxThroughputPerTib", throughput,
                     f"PERSISTENT_2 allows {', '.join(map(str, FSX_THROUGHPUT_PER_TIB))} MB/s per TiB")
    prefix = r.string(f"{key}.fsxImportPrefix", obj.get("fsxImportPrefix", "datasets/"))
    mount = r.string(f"{key}.fsxMountPath", obj.get("fsxMountPath", "/fsx"))
    if not mount.startswith("/"):
        raise r.fail(f"{key}.fsxMountPath", mount, "must be an absolute path")
    return StorageSpec(fsx_capacity_gib=capacity, fsx_throughput_per_tib=throughput,
                       fsx_import_prefix=prefix, fsx_mount_path=mount)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, or a ConfigError naming the file."""
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(source, "(file)", None, "stack file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(source, "(yaml)", None, f"not valid YAML: {err}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("config", {}), Mapping):
        raise ConfigError(source, "config", doc, "a stack file is a mapping with a `config:` mapping")
    return dict(doc.get("config") or {})


def load_stack(path: Path) -> StackSpec:
    """Load and validate ``Pulumi.<name>.yaml``."""
    match = re.match(r"^Pulumi\.(.+)\.ya?ml$", path.name)
    if not match:
        raise ConfigError(str(path), "(file)", path.name, "stack files are named Pulumi.<stack>.yaml")
    return parse_stack(read_stack_file(path), name=match.group(1), source=str(path))


def discover_stacks(stacks_dir: Path) -> list[Path]:
    return sorted(p for p in stacks_dir.glob("Pulumi.*.y*ml"))

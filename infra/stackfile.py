"""The loader of ``stacks/Pulumi.<stack>.yaml``: every rule of the stack files, checked once.

Pulumi's project schema can only type scalars and arrays, so the structured parts (pools, node
groups, storage) are validated here, into the model of ``gpufleet.infra.model``. Every error is a
ConfigError naming the stack file, the key and the value (exit code 2). ``check_fleet`` adds the
rules that span stack files (a node group's pool, the capacity ledger). Nothing downstream checks
these values again: the program and the components trust the model.
Pure: no pulumi import.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpufleet.infra import catalog
from gpufleet.infra.capacity import Consumer, PoolUsage, tally
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import (
    ClusterKind,
    NetworkSpec,
    NodeGroupSpec,
    PoolKind,
    PoolSpec,
    Role,
    StackSpec,
    StorageSpec,
)

NS = "gpufleet"
ACCOUNT_ID = re.compile(r"^\d{12}$")
AZ_ID = re.compile(r"^[a-z]{2,5}\d{1,2}-az\d{1,2}$")
AZ_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{8,17}$")
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(Z|\+00:00)$")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"

FSX_THROUGHPUT_PER_TIB = (125, 250, 500, 1000)


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
    if cluster_kind is ClusterKind.EKS and len(az_ids) < 2:
        raise r.fail(f"{NS}:azIds", list(az_ids), "an EKS cluster needs subnets in at least two AZs",
                     "add a second AZ ID (the GPU node groups still run in their pool's AZ)")
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
        r.fields(key, obj, {"name", "instanceType", "azId", "count", "kind", "reservationId", "shareWith",
                            "startTime", "endTime"},
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
        if kind is PoolKind.ON_DEMAND and reservation_id is not None:
            raise r.fail(f"{key}.reservationId", reservation_id, "an on-demand pool holds no reservation",
                         "remove reservationId, or set kind: odcr to adopt the reservation")
        start_time, end_time = _block_window(r, key, kind, obj.get("startTime"), obj.get("endTime"))
        share = tuple(r.enum(f"{key}.shareWith[{j}]", v, Role)
                      for j, v in enumerate(r.sequence(f"{key}.shareWith", obj.get("shareWith", []))))
        for j, role in enumerate(share):
            if role not in consumers:
                raise r.fail(f"{key}.shareWith[{j}]", role.value, f"no account for {role} in {NS}:consumerAccounts")
        pools.append(PoolSpec(name=name, instance_type=instance_type, az_id=az_id,
                              count=r.integer(f"{key}.count", obj["count"], minimum=1), kind=kind,
                              reservation_id=reservation_id, share_with=share,
                              start_time=start_time, end_time=end_time))
    return tuple(pools)


def _utc_time(r: _Reader, key: str, value: object) -> datetime.datetime:
    if isinstance(value, datetime.datetime):  # YAML reads an unquoted timestamp as one
        if value.utcoffset() != datetime.timedelta(0):
            raise r.fail(key, value.isoformat(), "give the time in UTC (ending in Z)")
        return value.replace(tzinfo=datetime.UTC)
    text = r.string(key, value, UTC_TIME, "UTC time like 2026-03-02T11:30:00Z")
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise r.fail(key, text, "not a valid date and time") from None


def _block_window(r: _Reader, key: str, kind: PoolKind, start: object, end: object) -> tuple[str | None, str | None]:
    """A Capacity Block's window: both times, UTC, end after start, ending 11:30 UTC (every block
    does); other kinds have none."""
    if kind is not PoolKind.CAPACITY_BLOCK:
        for name, value in (("startTime", start), ("endTime", end)):
            if value is not None:
                raise r.fail(f"{key}.{name}", value, f"only a capacity-block pool has a time window (kind is {kind.value})")
        return None, None
    for name, value in (("startTime", start), ("endTime", end)):
        if value is None:
            raise r.fail(f"{key}.{name}", None, "a capacity block has a start and an end: copy them from the purchase")
    begins, ends = _utc_time(r, f"{key}.startTime", start), _utc_time(r, f"{key}.endTime", end)
    if ends <= begins:
        raise r.fail(f"{key}.endTime", end, f"must be after startTime {start}")
    if (ends.hour, ends.minute, ends.second) != (11, 30, 0):
        raise r.fail(f"{key}.endTime", end, "every capacity block ends at 11:30 UTC")
    return begins.strftime(ISO_UTC), ends.strftime(ISO_UTC)


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


NODE_GROUP_FIELDS = {"name", "pool", "instanceType", "initialNodes", "minNodes", "maxNodes", "enablePlacementGroup"}
RENAMED_FIELDS = {"numNodes": "initialNodes"}
"""Node group keys of earlier versions -> their names now."""


def _node_groups(r: _Reader) -> tuple[NodeGroupSpec, ...]:
    groups = []
    seen: set[str] = set()
    for i, obj in enumerate(r.sequence(f"{NS}:nodeGroups", r.get("nodeGroups", []))):
        key = f"{NS}:nodeGroups[{i}]"
        obj = r.mapping(key, obj)
        for old, new in RENAMED_FIELDS.items():
            if old in obj:
                raise r.fail(f"{key}.{old}", obj[old], f"renamed to {new}",
                             f"write `{new}: {obj[old]}`: the size the group is created with "
                             "(the rebalancer owns the live size)")
        r.fields(key, obj, NODE_GROUP_FIELDS, {"name", "pool", "instanceType", "initialNodes"})
        name = r.string(f"{key}.name", obj["name"], NAME, "name (lowercase letters, digits, dashes)")
        if name in seen:
            raise r.fail(f"{key}.name", name, "node group names must be unique in a stack")
        seen.add(name)
        instance_type = r.instance_type(f"{key}.instanceType", obj["instanceType"])
        if not catalog.lookup(instance_type).is_gpu:
            raise r.fail(f"{key}.instanceType", instance_type, "node groups hold GPU or accelerator instances")
        initial = r.integer(f"{key}.initialNodes", obj["initialNodes"])
        low = r.integer(f"{key}.minNodes", obj.get("minNodes", 0))
        high = r.integer(f"{key}.maxNodes", obj.get("maxNodes", initial))
        if high < 1:
            # EKS refuses a managed node group whose maximum is 0; an ASG of at most 0 holds nothing.
            raise r.fail(f"{key}.maxNodes", obj.get("maxNodes"), "a node group must be able to hold a node: "
                         "maxNodes must be at least 1" + ("" if "maxNodes" in obj else " (it defaults to initialNodes)"))
        if low > initial:
            raise r.fail(f"{key}.minNodes", low, f"greater than initialNodes ({initial})")
        if high < initial:
            raise r.fail(f"{key}.maxNodes", high, f"less than initialNodes ({initial})")
        groups.append(NodeGroupSpec(
            name=name, pool=r.string(f"{key}.pool", obj["pool"]), instance_type=instance_type,
            initial_nodes=initial, min_nodes=low, max_nodes=high,
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
    if prefix.startswith("/"):
        raise r.fail(f"{key}.fsxImportPrefix", prefix, "a key prefix in the dataset bucket: no leading /")
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


def stack_name(path: Path) -> str:
    """The stack a file ``Pulumi.<stack>.yaml`` configures."""
    match = re.match(r"^Pulumi\.(.+)\.ya?ml$", path.name)
    if not match:
        raise ConfigError(str(path), "(file)", path.name, "stack files are named Pulumi.<stack>.yaml")
    return match.group(1)


def load_stack(path: Path) -> StackSpec:
    """Load and validate ``Pulumi.<name>.yaml``."""
    return parse_stack(read_stack_file(path), name=stack_name(path), source=str(path))


def discover_stacks(stacks_dir: Path) -> list[Path]:
    return sorted(p for p in stacks_dir.glob("Pulumi.*.y*ml"))


def load_fleet(paths: Sequence[Path]) -> list[StackSpec]:
    """Load every stack file and check the rules that span them (``check_fleet``)."""
    specs = [load_stack(p) for p in paths]
    check_fleet(specs)
    return specs


def platform_of(specs: Sequence[StackSpec]) -> StackSpec | None:
    """The fleet's platform stack; a second one is bad input."""
    platforms = [s for s in specs if s.role is Role.PLATFORM]
    if len(platforms) > 1:
        raise ConfigError(platforms[1].source, f"{NS}:role", "platform",
                          f"a fleet has one platform stack, and {platforms[0].source} is one already")
    return platforms[0] if platforms else None


def check_fleet(specs: Sequence[StackSpec]) -> list[PoolUsage]:
    """Check every binding of node group to pool across the stack files; return the capacity
    ledger at the initial sizes. Over-commit names the consumer file and key that tipped it over.

    Without the platform stack among ``specs`` the bindings cannot be checked (and the ledger is
    empty): the program checks them against the platform's outputs when the stack deploys.
    """
    platform = platform_of(specs)
    if platform is None:
        return []
    pools = {p.name: p for p in platform.pools}
    bound: list[tuple[StackSpec, int, NodeGroupSpec]] = []
    for spec in specs:
        if spec.role is Role.PLATFORM:
            continue
        if platform.consumer_accounts.get(spec.role) not in (None, spec.account_id):
            raise ConfigError(spec.source, f"{NS}:accountId", spec.account_id,
                              f"{platform.source} names {platform.consumer_accounts[spec.role]} as the {spec.role} account")
        for i, group in enumerate(spec.node_groups):
            _check_binding(spec, i, group, platform, pools)
            bound.append((spec, i, group))
    ledger = tally(platform.pools, (Consumer(pool=g.pool, role=s.role.value, nodes=g.initial_nodes)
                                    for s, _, g in bound))
    for usage in ledger:
        if usage.free >= 0:
            continue
        held = 0
        for spec, i, group in bound:  # the group that tips the pool over, in stack file order
            held += group.initial_nodes if group.pool == usage.name else 0
            if held > usage.count:
                wants = ", ".join(f"{role} {n}" for role, n in usage.consumers.items())
                raise ConfigError(spec.source, f"{NS}:nodeGroups[{i}].initialNodes", group.initial_nodes,
                                  f"pool {usage.name} is over-committed: it holds {usage.count} nodes, "
                                  f"consumers want {usage.used} ({wants})",
                                  "lower initialNodes here or in the other consumer, or grow the pool")
    return ledger


def _check_binding(spec: StackSpec, index: int, group: NodeGroupSpec, platform: StackSpec,
                   pools: Mapping[str, PoolSpec]) -> None:
    key = f"{NS}:nodeGroups[{index}]"
    pool = pools.get(group.pool)
    if pool is None:
        raise ConfigError(spec.source, f"{key}.pool", group.pool, f"no such pool in {platform.source}",
                          f"pools: {', '.join(sorted(pools)) or 'none'}")
    if group.instance_type != pool.instance_type:
        raise ConfigError(spec.source, f"{key}.instanceType", group.instance_type,
                          f"pool {pool.name} holds {pool.instance_type}")
    if pool.az_id not in spec.az_ids:
        raise ConfigError(spec.source, f"{NS}:azIds", list(spec.az_ids),
                          f"pool {pool.name} is in {pool.az_id}; the stack needs a subnet there")
    if pool.kind.is_reserved and spec.role not in pool.share_with:
        raise ConfigError(spec.source, f"{key}.pool", group.pool, f"pool {pool.name} is not shared with {spec.role}",
                          f"add {spec.role} to shareWith of the pool in {platform.source}")
    if group.max_nodes > pool.count:
        raise ConfigError(spec.source, f"{key}.maxNodes", group.max_nodes,
                          f"pool {pool.name} holds only {pool.count} nodes")

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
import datetime as dt
import difflib
import enum
import functools
import ipaddress
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpufleet.infra import catalog, healer_image, strict_yaml
from gpufleet.infra.capacity import Consumer, PoolUsage, tally
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import (
    DEFAULT_LEAD_TIME_MINUTES,
    HEALTH_TIERS,
    ClusterKind,
    HealthGateSpec,
    HealthProbe,
    LendRule,
    NetworkSpec,
    NodeGroupSpec,
    PoolKind,
    PoolSchedule,
    PoolSpec,
    RamSharing,
    ReactiveRule,
    Role,
    ScheduleWindow,
    ServingSignal,
    StackSpec,
    StorageSpec,
)

NS = "gpufleet"
ACCOUNT_ID = re.compile(r"^\d{12}$")
AZ_ID = re.compile(r"^[a-z]{2,5}\d{1,2}-az\d{1,2}$")
AZ_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w", "central": "c", "northeast": "ne",
              "southeast": "se", "northwest": "nw", "southwest": "sw"}
"""How AWS abbreviates a region's direction in its AZ IDs (us-east-1 -> use1, ap-southeast-2 -> apse2)."""


def az_id_prefix(region: str) -> str | None:
    """The AZ ID prefix of a region (``use1`` for us-east-1), or None for a region shape not known."""
    parts = region.split("-")
    gov = parts[1:2] == ["gov"]
    if gov:
        parts = [parts[0], *parts[2:]]
    if len(parts) != 3 or parts[1] not in DIRECTIONS or not parts[2].isdigit():
        return None
    return f"{parts[0]}{'g' if gov else ''}{DIRECTIONS[parts[1]]}{parts[2]}"


REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{8,17}$")
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(Z|\+00:00)$")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"

FSX_THROUGHPUT_PER_TIB = (125, 250, 500, 1000)


# Keys each role may set; every stack sets the common ones.
COMMON_KEYS = {"role", "accountId", "deployRoleArn", "azIds", "network", "clusterKind", "holdsPhi", "ramSharing"}
ROLE_KEYS = {
    Role.PLATFORM: {"consumerAccounts", "pools", "schedule"},
    Role.TRAINING: {"platformStack", "nodeGroups", "storage", "eksPublicAccessCidrs", "healthGate", "healerImage"},
    Role.INFERENCE: {"platformStack", "nodeGroups", "eksPublicAccessCidrs", "healthGate"},
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

    def number(self, key: str, value: object, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, value, "expected a number")
        if value < minimum:
            raise self.fail(key, value, f"must be at least {minimum:g}")
        return float(value)

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
    prefix = az_id_prefix(region)
    for i, az in enumerate(az_ids):
        if prefix is not None and not az.startswith(prefix + "-az"):
            raise r.fail(f"{NS}:azIds[{i}]", az, f"not an AZ ID of {region} (its AZ IDs are {prefix}-azN)")
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
    ram_sharing = r.enum(f"{NS}:ramSharing", r.get("ramSharing", RamSharing.ORGANIZATION.value), RamSharing)

    spec: dict[str, Any] = {}
    if role is Role.PLATFORM:
        spec["consumer_accounts"] = _consumer_accounts(r, account_id)
        spec["pools"] = _pools(r, az_ids, spec["consumer_accounts"])
        if f"{NS}:schedule" in raw:
            spec["schedule"] = _schedule(r, spec["pools"])
    else:
        spec["platform_stack"] = r.string(f"{NS}:platformStack", r.get("platformStack"))
        spec["node_groups"] = _node_groups(r)
        for i, group in enumerate(spec["node_groups"]):
            if group.lent_reservation_id and role is not Role.TRAINING:
                raise r.fail(f"{NS}:nodeGroups[{i}].lentReservationId", group.lent_reservation_id,
                             f"only training runs in lent slots; a {role} group uses the pool's reservation")
        if role is Role.TRAINING and f"{NS}:storage" in raw:
            spec["storage"] = _storage(r, r.mapping(f"{NS}:storage", raw[f"{NS}:storage"]))
        if f"{NS}:eksPublicAccessCidrs" in raw:
            spec["eks_public_access_cidrs"] = _public_access_cidrs(r, cluster_kind, holds_phi)
        if f"{NS}:healerImage" in raw:
            spec["healer_image"] = _healer_image(r, cluster_kind, account_id, region)
        spec["health_gate"] = _health_gate(r, r.mapping(f"{NS}:healthGate", raw.get(f"{NS}:healthGate", {})), holds_phi)
    return StackSpec(
        name=name, source=source, role=role, account_id=account_id, region=region,
        deploy_role_arn=deploy_role_arn, az_ids=az_ids, network=network, cluster_kind=cluster_kind,
        holds_phi=holds_phi, ram_sharing=ram_sharing, **spec,
    )


HEALTH_GATE_FIELDS = {"probe", "tiers", "dcgmLevel", "stragglerFailPct"}
PHI_TIERS = ("quick", "deep")
"""A PHI account runs the deep tier (DCGM diagnostics) on a new node unless the stack says otherwise."""
PHI_STRAGGLER_FAIL_PCT = 8
"""A PHI account fails a node this far below its pool's median unless the stack says otherwise."""


def _health_gate(r: _Reader, obj: Mapping[str, Any], holds_phi: bool) -> HealthGateSpec:
    key = f"{NS}:healthGate"
    r.fields(key, obj, HEALTH_GATE_FIELDS, set())
    probe = r.enum(f"{key}.probe", obj.get("probe", HealthProbe.ORCHESTRATOR.value), HealthProbe)
    if probe is HealthProbe.SSM and holds_phi:
        raise r.fail(f"{key}.probe", probe.value, "a stack that holds PHI has no SSM (no SSM instance role, "
                     "endpoints or ssm:* for the operator)", "use `probe: orchestrator` (a Job on the node, or srun)")
    default_tiers = list(PHI_TIERS if holds_phi else HealthGateSpec().tiers)
    tiers = tuple(r.string(f"{key}.tiers[{i}]", v)
                  for i, v in enumerate(r.sequence(f"{key}.tiers", obj.get("tiers", default_tiers))))
    for i, tier in enumerate(tiers):
        if tier not in HEALTH_TIERS:
            raise r.fail(f"{key}.tiers[{i}]", tier, f"expected one of: {', '.join(HEALTH_TIERS)}")
    if not tiers or len(set(tiers)) != len(tiers):
        raise r.fail(f"{key}.tiers", list(tiers), "name each tier once, at least one")
    level = r.integer(f"{key}.dcgmLevel", obj.get("dcgmLevel", 2), minimum=1)
    if level > 4:
        raise r.fail(f"{key}.dcgmLevel", level, "DCGM diagnostics levels are 1 to 4")
    default_pct = PHI_STRAGGLER_FAIL_PCT if holds_phi else HealthGateSpec().straggler_fail_pct
    pct = r.integer(f"{key}.stragglerFailPct", obj.get("stragglerFailPct", default_pct), minimum=1)
    if pct >= 100:
        raise r.fail(f"{key}.stragglerFailPct", pct, "a percentage below 100")
    return HealthGateSpec(probe=probe, tiers=tiers, dcgm_level=level, straggler_fail_pct=pct)


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
                            "startTime", "endTime", "pricePerHourUsd", "unusedBilledTo", "spares"},
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
        price, billed_to = _pool_billing(r, key, obj, kind, share)
        count = r.integer(f"{key}.count", obj["count"], minimum=1)
        spares = r.integer(f"{key}.spares", obj.get("spares", 0))
        if spares >= count:
            raise r.fail(f"{key}.spares", spares, f"a pool of {count} nodes keeps fewer spares than that",
                         "spares are held out of the pool's count; the rest is what consumers get")
        if spares and Role.TRAINING not in share:
            raise r.fail(f"{key}.spares", spares, "spares are held in the pool's training group, and this pool "
                         "is not shared with training", "add training to shareWith, or remove spares")
        pools.append(PoolSpec(name=name, instance_type=instance_type, az_id=az_id,
                              count=count, kind=kind, spares=spares,
                              reservation_id=reservation_id, share_with=share,
                              start_time=start_time, end_time=end_time,
                              price_usd_per_hour=price, unused_billed_to=billed_to))
    return tuple(pools)


def _pool_billing(r: _Reader, key: str, obj: Mapping[str, Any], kind: PoolKind,
                  share: tuple[Role, ...]) -> tuple[float | None, Role | None]:
    """A Capacity Block's purchase price (required: each block has its own, and the on-demand rate
    would be wrong, not close) and who takes billing of the unused capacity."""
    price = None
    if kind is PoolKind.CAPACITY_BLOCK:
        if obj.get("pricePerHourUsd") is None:
            raise r.fail(f"{key}.pricePerHourUsd", None, "a capacity block is billed at its purchase price: give it "
                         "per instance-hour", "the block's upfront fee / (instances x hours)")
        price = r.number(f"{key}.pricePerHourUsd", obj["pricePerHourUsd"])
        if price <= 0:
            raise r.fail(f"{key}.pricePerHourUsd", obj["pricePerHourUsd"], "must be above 0")
    elif obj.get("pricePerHourUsd") is not None:
        raise r.fail(f"{key}.pricePerHourUsd", obj["pricePerHourUsd"],
                     f"only a capacity block has a purchase price ({kind.value} bills the on-demand rate)")
    billed_to = None
    if obj.get("unusedBilledTo") is not None:
        billed_to = r.enum(f"{key}.unusedBilledTo", obj["unusedBilledTo"], Role)
        if kind is not PoolKind.ODCR:
            raise r.fail(f"{key}.unusedBilledTo", billed_to.value,
                         f"billing of unused capacity is assigned for shared capacity reservations (kind odcr), "
                         f"not {kind.value}")
        if billed_to not in share:
            raise r.fail(f"{key}.unusedBilledTo", billed_to.value,
                         "billing goes to a consumer the reservation is shared with", f"add {billed_to} to shareWith")
    return price, billed_to


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SETS = {"daily": frozenset(range(7)), "weekdays": frozenset(range(5)), "weekends": frozenset({5, 6})}
SCHEDULE_FIELDS = {"pool", "windows", "inferenceNodesOutside", "trainingFloor", "leadTimeMinutes", "drainMinutes",
                   "reactive", "lend"}
LEND_FIELDS = {"enabled", "maxNodes"}
WINDOW_FIELDS = {"days", "start", "end", "timezone", "inferenceNodes"}
REACTIVE_FIELDS = {"signal", "upAbove", "downBelow", "upMinutes", "downMinutes", "step", "maxNodes"}


def _schedule(r: _Reader, pools: tuple[PoolSpec, ...]) -> tuple[PoolSchedule, ...]:
    by_name = {p.name: p for p in pools}
    out: list[PoolSchedule] = []
    for i, obj in enumerate(r.sequence(f"{NS}:schedule", r.get("schedule"))):
        key = f"{NS}:schedule[{i}]"
        obj = r.mapping(key, obj)
        r.fields(key, obj, SCHEDULE_FIELDS, {"pool", "windows", "inferenceNodesOutside", "trainingFloor"})
        pool = by_name.get(r.string(f"{key}.pool", obj["pool"]))
        if pool is None:
            raise r.fail(f"{key}.pool", obj["pool"], "no such pool in gpufleet:pools", f"pools: {', '.join(by_name)}")
        if any(s.pool == pool.name for s in out):
            raise r.fail(f"{key}.pool", pool.name, "the pool is scheduled twice")
        for role in (Role.TRAINING, Role.INFERENCE):
            if pool.kind.is_reserved and role not in pool.share_with:
                raise r.fail(f"{key}.pool", pool.name, f"pool {pool.name} is not shared with {role}: nothing can move",
                             f"add {role} to its shareWith")
        floor = r.integer(f"{key}.trainingFloor", obj["trainingFloor"])
        if floor > pool.count:
            raise r.fail(f"{key}.trainingFloor", floor, f"pool {pool.name} holds only {pool.count} nodes")

        nodes = functools.partial(_inference_nodes, r, pool, floor)
        windows = tuple(_window(r, f"{key}.windows[{j}]", w, nodes)
                        for j, w in enumerate(r.sequence(f"{key}.windows", obj["windows"])))
        reactive = None
        if obj.get("reactive") is not None:
            reactive = _reactive(r, f"{key}.reactive", r.mapping(f"{key}.reactive", obj["reactive"]), nodes)
        lend = None
        if obj.get("lend") is not None:
            lend = _lend(r, f"{key}.lend", r.mapping(f"{key}.lend", obj["lend"]), pool, floor)
        out.append(PoolSchedule(
            pool=pool.name, windows=windows,
            inference_nodes_outside=nodes(f"{key}.inferenceNodesOutside", obj["inferenceNodesOutside"]),
            training_floor=floor,
            lead_time_minutes=r.number(f"{key}.leadTimeMinutes", obj.get("leadTimeMinutes", DEFAULT_LEAD_TIME_MINUTES)),
            drain_minutes=r.number(f"{key}.drainMinutes", obj.get("drainMinutes", 5.0)),
            reactive=reactive, lend=lend,
        ))
    return tuple(out)


def _inference_nodes(r: _Reader, pool: PoolSpec, floor: int, key: str, value: object) -> int:
    n = r.integer(key, value)
    if n > pool.count - floor:
        raise r.fail(key, n, f"pool {pool.name} holds {pool.count} nodes and training keeps {floor}: "
                     f"at most {pool.count - floor} for inference")
    return n


def _window(r: _Reader, key: str, obj: object, nodes: Any) -> ScheduleWindow:
    obj = r.mapping(key, obj)
    r.fields(key, obj, WINDOW_FIELDS, WINDOW_FIELDS)
    days_value = obj["days"]
    if isinstance(days_value, str):
        if days_value not in DAY_SETS:
            raise r.fail(f"{key}.days", days_value, f"expected one of {', '.join(DAY_SETS)} or a list of days",
                         f"days: {', '.join(DAY_NAMES)}")
        days = DAY_SETS[days_value]
    else:
        names = r.sequence(f"{key}.days", days_value)
        for j, d in enumerate(names):
            if d not in DAY_NAMES:
                raise r.fail(f"{key}.days[{j}]", d, f"expected one of {', '.join(DAY_NAMES)}")
        days = frozenset(DAY_NAMES.index(d) for d in names)
        if not days:
            raise r.fail(f"{key}.days", names, "a window opens on at least one day")
    start, end = (_clock(r, f"{key}.{k}", obj[k]) for k in ("start", "end"))
    if end <= start:
        raise r.fail(f"{key}.end", obj["end"], f"must be after start ({obj['start']})",
                     "a window past midnight is two windows: one to 23:59, one from 00:00")
    tz = r.string(f"{key}.timezone", obj["timezone"])
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise r.fail(f"{key}.timezone", tz, "not an IANA time zone", "e.g. America/Chicago, Europe/Berlin, UTC") from None
    return ScheduleWindow(days=days, start=start, end=end, timezone=tz,
                          inference_nodes=nodes(f"{key}.inferenceNodes", obj["inferenceNodes"]))


def _clock(r: _Reader, key: str, value: object) -> dt.time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 15:00 as the sexagesimal integer 900.
        raise r.fail(key, value, "a time of day must be a quoted string", 'write it as "HH:MM", e.g. "15:00"')
    text = r.string(key, value)
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise r.fail(key, value, "expected a time of day HH:MM (24 hours)")
    return dt.time(int(match.group(1)), int(match.group(2)))


def _reactive(r: _Reader, key: str, obj: Mapping[str, Any], nodes: Any) -> ReactiveRule:
    r.fields(key, obj, REACTIVE_FIELDS, {"signal", "upAbove", "downBelow", "maxNodes"})
    signal = r.enum(f"{key}.signal", obj["signal"], ServingSignal)
    up = r.number(f"{key}.upAbove", obj["upAbove"])
    down = r.number(f"{key}.downBelow", obj["downBelow"])
    if signal is ServingSignal.KV_CACHE and up > 1:
        raise r.fail(f"{key}.upAbove", obj["upAbove"], "KV-cache use is a fraction from 0 to 1")
    if down >= up:
        raise r.fail(f"{key}.downBelow", obj["downBelow"], f"must be below upAbove ({obj['upAbove']}): "
                     "the gap between them is the hysteresis")
    return ReactiveRule(signal=signal, up_above=up, down_below=down,
                        up_minutes=r.integer(f"{key}.upMinutes", obj.get("upMinutes", 2), minimum=1),
                        down_minutes=r.integer(f"{key}.downMinutes", obj.get("downMinutes", 10), minimum=1),
                        step=r.integer(f"{key}.step", obj.get("step", 1), minimum=1),
                        max_nodes=nodes(f"{key}.maxNodes", obj["maxNodes"]))


def _lend(r: _Reader, key: str, obj: Mapping[str, Any], pool: PoolSpec, floor: int) -> LendRule | None:
    r.fields(key, obj, LEND_FIELDS, {"maxNodes"})
    most = r.integer(f"{key}.maxNodes", obj["maxNodes"], minimum=1)
    if not r.boolean(f"{key}.enabled", obj.get("enabled", True)):
        return None
    if pool.kind is not PoolKind.ODCR:
        # EC2 lends only an active ODCR without an end date (CreateInterruptibleCapacityReservationAllocation);
        # a Capacity Block always ends, an on-demand pool has no reservation
        why = "a Capacity Block has an end date" if pool.kind is PoolKind.CAPACITY_BLOCK else "an on-demand pool holds no reservation"
        raise r.fail(key, dict(obj), f"pool {pool.name} is {pool.kind.value}: {why}, and EC2 lends only "
                     "slots of an On-Demand Capacity Reservation without one",
                     "remove lend, or schedule an odcr pool")
    if most > pool.count - floor:
        raise r.fail(f"{key}.maxNodes", most, f"pool {pool.name} holds {pool.count} nodes and training keeps "
                     f"{floor} of its own: at most {pool.count - floor} can be lent")
    return LendRule(max_nodes=most)


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


def _healer_image(r: _Reader, cluster_kind: ClusterKind, account_id: str, region: str) -> str:
    key = f"{NS}:healerImage"
    value = r.string(key, r.get("healerImage"))
    if cluster_kind is not ClusterKind.EKS:
        raise r.fail(key, value, f"only an eks cluster runs the healer as a Deployment (clusterKind is "
                     f"{cluster_kind.value}; a Slurm head runs it as a service)")
    problem = healer_image.reference_problem(value, account_id, region)
    if problem is not None:
        raise r.fail(key, value, problem, f"push the image to {healer_image.repository_url(account_id, region)} "
                     "and name it by tag or digest (docs/heal-eks.md)")
    return value


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


NODE_GROUP_FIELDS = {"name", "pool", "instanceType", "initialNodes", "minNodes", "maxNodes", "enablePlacementGroup",
                     "lentReservationId"}
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
        lent = None
        if obj.get("lentReservationId") is not None:
            lent = r.string(f"{key}.lentReservationId", obj["lentReservationId"], RESERVATION_ID,
                            "capacity reservation id like cr-0123456789abcdef0")
            if initial or low:
                # the lent slots exist only while the platform lends them; the scheduler grows the group
                raise r.fail(f"{key}.{'initialNodes' if initial else 'minNodes'}", initial or low,
                             "a group in lent slots starts empty and may shrink to 0: EC2 reclaims them",
                             "set initialNodes and minNodes to 0")
        groups.append(NodeGroupSpec(
            name=name, pool=r.string(f"{key}.pool", obj["pool"]), instance_type=instance_type,
            initial_nodes=initial, min_nodes=low, max_nodes=high,
            enable_placement_group=r.boolean(f"{key}.enablePlacementGroup", obj.get("enablePlacementGroup", False)),
            lent_reservation_id=lent,
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
    doc = strict_yaml.load(path, "stack file")
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
        if spec.ram_sharing is not platform.ram_sharing:
            raise ConfigError(spec.source, f"{NS}:ramSharing", spec.ram_sharing.value,
                              f"{platform.source} shares its pools by {platform.ram_sharing.value}",
                              f"set {NS}:ramSharing: {platform.ram_sharing.value} here")
        for i, group in enumerate(spec.node_groups):
            _check_binding(spec, i, group, platform, pools)
            bound.append((spec, i, group))
    _check_schedule(platform, bound)
    _check_spares(platform, specs, bound)
    ledger = tally(platform.pools, (Consumer(pool=g.pool, role=s.role.value, nodes=g.initial_nodes)
                                    for s, _, g in bound))
    for usage in ledger:
        if usage.free >= 0:
            continue
        held = usage.spares
        for spec, i, group in bound:  # the group that tips the pool over, in stack file order
            held += group.initial_nodes if group.pool == usage.name else 0
            if held > usage.count:
                wants = ", ".join(f"{role} {n}" for role, n in usage.consumers.items())
                raise ConfigError(spec.source, f"{NS}:nodeGroups[{i}].initialNodes", group.initial_nodes,
                                  f"pool {usage.name} is over-committed: it holds {usage.count} nodes, "
                                  f"consumers want {usage.used - usage.spares} ({wants})"
                                  + (f" and it keeps {usage.spares} spares" if usage.spares else ""),
                                  "lower initialNodes here or in the other consumer, or grow the pool")
    return ledger


def _check_spares(platform: StackSpec, specs: Sequence[StackSpec],
                  bound: Sequence[tuple[StackSpec, int, NodeGroupSpec]]) -> None:
    """A pool's spares are held where the healer swaps them in: a Slurm- or EKS-run training group
    of the pool."""
    if not any(s.role is Role.TRAINING for s in specs):
        return  # the training stack is not among the files read
    for i, pool in enumerate(platform.pools):
        if pool.spares and not any(g.pool == pool.name and s.role is Role.TRAINING
                                   and s.cluster_kind in (ClusterKind.SLURM, ClusterKind.EKS) for s, _, g in bound):
            raise ConfigError(platform.source, f"{NS}:pools[{i}].spares", pool.spares,
                              f"no Slurm- or EKS-run training node group draws from pool {pool.name} to hold "
                              "its spares", "bind a training group with clusterKind slurm or eks to the pool, "
                              "or remove spares")


def _check_schedule(platform: StackSpec, bound: Sequence[tuple[StackSpec, int, NodeGroupSpec]]) -> None:
    """The inference groups of a scheduled pool can grow to what its schedule asks for."""
    for i, schedule in enumerate(platform.schedule):
        groups = [(s, g) for s, _, g in bound if g.pool == schedule.pool and s.role is Role.INFERENCE]
        if not groups:
            continue  # the inference stack is not among the files read (plan -s platform)
        room = sum(g.max_nodes for _, g in groups)
        asks = [(f"windows[{j}].inferenceNodes", w.inference_nodes) for j, w in enumerate(schedule.windows)]
        asks.append(("inferenceNodesOutside", schedule.inference_nodes_outside))
        if schedule.reactive is not None:
            asks.append(("reactive.maxNodes", schedule.reactive.max_nodes))
        for field_name, nodes in asks:
            if nodes > room:
                where = ", ".join(f"{s.source} {g.name} ({g.max_nodes})" for s, g in groups)
                raise ConfigError(platform.source, f"{NS}:schedule[{i}].{field_name}", nodes,
                                  f"the inference node groups of pool {schedule.pool} hold at most {room} nodes: {where}",
                                  "raise maxNodes of the inference node group, or ask for fewer nodes")


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
    if spec.region != platform.region:
        raise ConfigError(spec.source, "aws:region", spec.region,
                          f"node group {group.name} uses pool {pool.name}, which is in {platform.region} "
                          f"({platform.source}): a capacity reservation serves instances of its own region only")
    if pool.az_id not in spec.az_ids:
        raise ConfigError(spec.source, f"{NS}:azIds", list(spec.az_ids),
                          f"pool {pool.name} is in {pool.az_id}; the stack needs a subnet there")
    if pool.kind.is_reserved and spec.role not in pool.share_with:
        raise ConfigError(spec.source, f"{key}.pool", group.pool, f"pool {pool.name} is not shared with {spec.role}",
                          f"add {spec.role} to shareWith of the pool in {platform.source}")
    if group.max_nodes > pool.count:
        raise ConfigError(spec.source, f"{key}.maxNodes", group.max_nodes,
                          f"pool {pool.name} holds only {pool.count} nodes")
    if group.lent_reservation_id:
        _check_lent(spec, key, group, platform, pool)


def _check_lent(spec: StackSpec, key: str, group: NodeGroupSpec, platform: StackSpec, pool: PoolSpec) -> None:
    """A group in lent slots draws from a pool whose schedule lends, and no more than it lends."""
    lend = next((s.lend for s in platform.schedule if s.pool == pool.name), None)
    if lend is None:
        raise ConfigError(spec.source, f"{key}.lentReservationId", group.lent_reservation_id,
                          f"pool {pool.name} lends nothing: {platform.source} has no lend in its schedule",
                          f"add lend (maxNodes) to the schedule of {pool.name}, or remove lentReservationId")
    if group.max_nodes > lend.max_nodes:
        raise ConfigError(spec.source, f"{key}.maxNodes", group.max_nodes,
                          f"pool {pool.name} lends at most {lend.max_nodes} nodes ({platform.source})")

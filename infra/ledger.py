"""The capacity ledger: pools against the node groups that consume them, across stacks.

Pure: no pulumi import. Invariant (DESIGN.md): for every pool, the sum of consumers' desired nodes
is at most the pool's count. A violation is bad input, named by the consumer file and key that
tipped it over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gpufleet.infra import catalog
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.stackfile import NS, PoolKind, PoolSpec, Role, StackSpec


@dataclass(frozen=True, kw_only=True)
class Finding:
    """Something the plan flags; the guardrails use the same shape."""

    rule: str
    severity: str
    """``error`` (mandatory) or ``warning``."""
    stack: str
    resource: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "stack": self.stack,
                "resource": self.resource, "message": self.message}


@dataclass(kw_only=True)
class PoolLedger:
    """One pool and who uses how much of it. ``consumers`` maps stack role -> desired nodes."""

    name: str
    instance_type: str
    az_id: str
    count: int
    kind: str
    consumers: dict[str, int] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return sum(self.consumers.values())

    @property
    def free(self) -> int:
        return self.count - self.used

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "instance_type": self.instance_type, "az_id": self.az_id,
                "count": self.count, "kind": self.kind, "consumers": dict(self.consumers), "free": self.free}


def platform_of(specs: Sequence[StackSpec]) -> StackSpec | None:
    platforms = [s for s in specs if s.role is Role.PLATFORM]
    if len(platforms) > 1:
        second = platforms[1]
        raise ConfigError(second.source, f"{NS}:role", "platform",
                          f"a fleet has one platform stack, and {platforms[0].source} is one already")
    return platforms[0] if platforms else None


def build_ledger(specs: Sequence[StackSpec]) -> list[PoolLedger]:
    """Check every binding of node group to pool and return the ledger, pool by pool."""
    platform = platform_of(specs)
    pools: dict[str, PoolSpec] = {p.name: p for p in platform.pools} if platform else {}
    ledger = {p.name: PoolLedger(name=p.name, instance_type=p.instance_type, az_id=p.az_id,
                                 count=p.count, kind=p.kind.value) for p in pools.values()}
    for spec in specs:
        if spec.role is Role.PLATFORM:
            continue
        if platform is not None and platform.consumer_accounts.get(spec.role) not in (None, spec.account_id):
            raise ConfigError(spec.source, f"{NS}:accountId", spec.account_id,
                              f"{platform.source} names {platform.consumer_accounts[spec.role]} as the {spec.role} account")
        for i, group in enumerate(spec.node_groups):
            key = f"{NS}:nodeGroups[{i}]"
            if platform is None:
                continue  # rendered alone: the binding is checked when the platform stack is in the plan
            pool = pools.get(group.pool)
            if pool is None:
                raise ConfigError(spec.source, f"{key}.pool", group.pool,
                                  f"no such pool in {platform.source}", f"pools: {', '.join(sorted(pools)) or 'none'}")
            if group.instance_type != pool.instance_type:
                raise ConfigError(spec.source, f"{key}.instanceType", group.instance_type,
                                  f"pool {pool.name} holds {pool.instance_type}")
            if pool.az_id not in spec.az_ids:
                raise ConfigError(spec.source, f"{NS}:azIds", list(spec.az_ids),
                                  f"pool {pool.name} is in {pool.az_id}; the stack needs a subnet there")
            if pool.kind.is_reserved and spec.role not in pool.share_with:
                raise ConfigError(spec.source, f"{key}.pool", group.pool,
                                  f"pool {pool.name} is not shared with {spec.role}",
                                  f"add {spec.role} to shareWith of the pool in {platform.source}")
            if group.max_nodes > pool.count:
                raise ConfigError(spec.source, f"{key}.maxNodes", group.max_nodes,
                                  f"pool {pool.name} holds only {pool.count} nodes")
            entry = ledger[pool.name]
            entry.consumers[spec.role.value] = entry.consumers.get(spec.role.value, 0) + group.num_nodes
            if entry.used > entry.count:
                wants = ", ".join(f"{role} {n}" for role, n in entry.consumers.items())
                raise ConfigError(spec.source, f"{key}.numNodes", group.num_nodes,
                                  f"pool {pool.name} is over-committed: it holds {entry.count} nodes, consumers want {entry.used} ({wants})",
                                  "lower numNodes here or in the other consumer, or grow the pool")
    return list(ledger.values())


def placement_findings(specs: Sequence[StackSpec]) -> list[Finding]:
    """Combinations known to fail at launch, before anything is applied.

    A cluster placement group asks EC2 for instances close together *now*; a targeted reservation
    or capacity block holds instances that were placed when it was made. Together they routinely
    fail with InsufficientInstanceCapacity, so the plan flags them.
    """
    platform = platform_of(specs)
    pools = {p.name: p for p in platform.pools} if platform else {}
    findings = []
    for spec in specs:
        for group in spec.node_groups:
            pool = pools.get(group.pool)
            if group.enable_placement_group and pool is not None and pool.kind is not PoolKind.ON_DEMAND:
                findings.append(Finding(
                    rule="capacity.placement-group-with-reservation", severity="error", stack=spec.name,
                    resource=group.name,
                    message=(f"node group {group.name} puts a cluster placement group on {pool.kind.value} pool "
                             f"{pool.name}: EC2 rejects this with InsufficientInstanceCapacity. Set "
                             "enablePlacementGroup: false (the reservation already fixes placement)."),
                ))
            info = catalog.lookup(group.instance_type)
            if group.enable_placement_group and not info.has_efa:
                findings.append(Finding(
                    rule="capacity.placement-group-without-efa", severity="warning", stack=spec.name,
                    resource=group.name,
                    message=f"node group {group.name} uses a placement group for {group.instance_type}, which has no EFA.",
                ))
    return findings

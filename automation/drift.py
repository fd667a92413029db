"""`gpufleet plan --live`: where the live fleet differs from the stack files.

The live side is what ``gpufleet status`` reads (the inventory's outputs, the Auto Scaling groups,
the reservations' counts). What counts as drift: a group's bounds (minNodes, maxNodes), its pool
or instance type, a pool's count, kind, instance type or AZ, and anything declared but not
deployed or deployed but not declared. What does not: a group's live size differing from its
``initialNodes``. Pulumi sets the initial size once and the rebalancer owns the live size, so that
difference is reported as such, never as drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.inventory_age import InventoryAge
from gpufleet.automation.status import FleetStatus
from gpufleet.infra.model import Role, StackSpec


@dataclass(frozen=True, kw_only=True)
class Difference:
    """One value the stack files and the live fleet disagree on."""

    stack: str
    resource: str
    """The node group or pool."""
    field: str
    """What differs: min_nodes, max_nodes, pool, instance_type, count, kind, az_id, size, or
    ``exists`` (declared and not deployed, or deployed and not declared)."""
    declared: Any
    """The stack files' value (None: not declared)."""
    live: Any
    """The live value (None: not deployed)."""
    drift: bool
    """False for the live size against initialNodes: the rebalancer's to change, not drift."""
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "resource": self.resource, "field": self.field, "declared": self.declared,
                "live": self.live, "drift": self.drift, "message": self.message}


@dataclass(frozen=True, kw_only=True)
class LiveDrift:
    source: str
    """The inventory file."""
    inventory: InventoryAge
    differences: tuple[Difference, ...]

    @property
    def drifted(self) -> list[Difference]:
        return [d for d in self.differences if d.drift]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "inventory": self.inventory.to_dict(), "drift": len(self.drifted),
                "differences": [d.to_dict() for d in self.differences]}


def compare(specs: Sequence[StackSpec], inventory: FleetInventory, status: FleetStatus) -> LiveDrift:
    """The differences between the stack files and the live fleet, for the stacks in ``specs``."""
    out: list[Difference] = []
    for spec in specs:
        if spec.name not in inventory.stacks:
            out.append(Difference(stack=spec.name, resource=spec.name, field="exists", declared=spec.source, live=None,
                                  drift=True, message=f"stack {spec.name} is not in the inventory ({inventory.source})"))
        elif spec.role is Role.PLATFORM:
            out += _pools(spec, inventory, status)
        else:
            out += _groups(spec, inventory, status)
    return LiveDrift(source=inventory.source, inventory=status.inventory, differences=tuple(out))


def _pools(spec: StackSpec, inventory: FleetInventory, status: FleetStatus) -> list[Difference]:
    out = []
    deployed = {p.name: p for p in inventory.stacks[spec.name].pools}
    live_counts = {p.name: p.count for p in status.pools}
    for pool in spec.pools:
        have = deployed.get(pool.name)
        if have is None:
            out.append(Difference(stack=spec.name, resource=pool.name, field="exists", declared=pool.name, live=None,
                                  drift=True, message=f"pool {pool.name} is declared but not in the stack's outputs"))
            continue
        compared = (("instance_type", pool.instance_type, have.instance_type), ("az_id", pool.az_id, have.az_id),
                    ("kind", pool.kind.value, have.kind), ("count", pool.count, live_counts.get(pool.name, have.count)))
        for name, declared, live in compared:
            if declared != live:
                out.append(Difference(stack=spec.name, resource=pool.name, field=name, declared=declared, live=live,
                                      drift=True, message=f"pool {pool.name}: {name} is {live}, the stack file says {declared}"))
    declared_names = {p.name for p in spec.pools}
    out += [Difference(stack=spec.name, resource=name, field="exists", declared=None, live=name, drift=True,
                       message=f"pool {name} is deployed but not in {spec.source}")
            for name in deployed if name not in declared_names]
    return out


def _groups(spec: StackSpec, inventory: FleetInventory, status: FleetStatus) -> list[Difference]:
    out = []
    deployed = {g.name: g for g in inventory.stacks[spec.name].node_groups}
    live = {g.name: g for g in status.node_groups if g.stack == spec.name}
    for group in spec.node_groups:
        have, now = deployed.get(group.name), live.get(group.name)
        where = f"node group {spec.name}/{group.name}"
        if have is None or now is None or now.problem:
            why = now.problem if now is not None and now.problem else "not in the stack's outputs"
            out.append(Difference(stack=spec.name, resource=group.name, field="exists", declared=group.name, live=None,
                                  drift=True, message=f"{where} is declared but {why}"))
            continue
        compared = (("pool", group.pool, have.pool), ("instance_type", group.instance_type, have.instance_type),
                    ("min_nodes", group.min_nodes, now.min_nodes), ("max_nodes", group.max_nodes, now.max_nodes))
        for name, declared, value in compared:
            if declared != value:
                out.append(Difference(stack=spec.name, resource=group.name, field=name, declared=declared, live=value,
                                      drift=True, message=f"{where}: {name} is {value}, the stack file says {declared}"))
        if now.desired != group.initial_nodes:
            out.append(Difference(
                stack=spec.name, resource=group.name, field="size", declared=group.initial_nodes, live=now.desired,
                drift=False, message=f"{where} runs {now.desired} nodes, created with {group.initial_nodes}: "
                                     "the rebalancer owns the live size (not drift)"))
    declared_names = {g.name for g in spec.node_groups}
    out += [Difference(stack=spec.name, resource=name, field="exists", declared=None, live=name, drift=True,
                       message=f"node group {spec.name}/{name} is deployed but not in {spec.source}")
            for name in deployed if name not in declared_names]
    return out

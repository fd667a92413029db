"""The one capacity tally: per pool, the nodes each consumer role holds, and what is left.

Pure: no pulumi import. Every reader of capacity uses it: the stack-file loader (initial sizes;
over-commit is bad input), ``gpufleet plan`` (the ledger), ``gpufleet status`` (live desired
sizes), the rebalance planner (before and after a move) and the tests. The invariant (DESIGN.md):
for every pool, the sum of the consumers' desired nodes and its hot spares is at most the pool's count.

``PoolUsage`` is the one shape of a pool's usage: ``gpufleet plan --json`` and ``gpufleet status
--json`` both print it, so a plan and a live fleet compare key by key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol


class Pool(Protocol):
    """What the tally reads of a pool: ``PoolSpec`` (stack file) and ``PoolOutput`` (stack outputs)."""

    @property
    def name(self) -> str: ...
    @property
    def instance_type(self) -> str: ...
    @property
    def az_id(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def start_time(self) -> str | None: ...
    @property
    def end_time(self) -> str | None: ...
    @property
    def price_usd_per_hour(self) -> float | None: ...
    @property
    def unused_billed_to(self) -> str | None: ...
    @property
    def spares(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class Consumer:
    """Nodes one node group holds of a pool: its initial size (plan) or live desired size (status)."""

    pool: str
    """The pool's name."""
    role: str
    """Role of the consumer stack (training, inference)."""
    nodes: int
    """Desired nodes of the group."""


@dataclass(frozen=True, kw_only=True)
class PoolUsage:
    """One pool and who holds how much of it."""

    name: str
    """Pool name."""
    instance_type: str
    """Instance type of the pool."""
    az_id: str
    """AZ ID of the pool."""
    count: int
    """Instances the pool holds (declared, or the reservation's live count)."""
    kind: str
    """odcr | capacity-block | on-demand."""
    consumers: Mapping[str, int] = field(default_factory=dict)
    """Consumer role -> desired nodes of its groups on this pool (roles in name order)."""
    spares: int = 0
    """Hot spares the pool keeps (launched, gated, held in its training Slurm group): no consumer's."""
    free: int = 0
    """count minus the consumers' nodes and the spares; negative: over-committed."""
    in_flight: int = 0
    """Nodes of rebalances of this pool still in flight (0 in a plan)."""
    start_time: str | None = None
    """Capacity Blocks: when the block starts (ISO 8601, UTC); None for other kinds."""
    end_time: str | None = None
    """Capacity Blocks: when it ends; EC2 terminates its instances from 30 minutes before."""
    price_usd_per_hour: float | None = None
    """Capacity Blocks: the purchase price per instance-hour; None: the on-demand rate."""
    unused_billed_to: str | None = None
    """The consumer role billed for unused slots; None: the platform account."""

    @property
    def used(self) -> int:
        return self.count - self.free

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "consumers": dict(self.consumers)}


@dataclass(frozen=True, kw_only=True)
class LiveGroup:
    """A consumer group's live size, as ``held_consumers`` reads it."""

    pool: str
    role: str
    orchestrator: str
    """slurm | eks | none: spares are held only in a Slurm-run training group."""
    desired: int


def held_consumers(groups: Iterable[LiveGroup], spares: Mapping[str, int]) -> list[Consumer]:
    """Each group's desired size as its role's, less the pool's hot spares in the groups holding
    them (the pool's Slurm-run training groups, first first): a spare is launched there but is no
    consumer's. ``spares``: pool -> spares it keeps. Used by ``gpufleet status`` and the rebalancer."""
    left = dict(spares)
    out = []
    for g in groups:
        held = min(left.get(g.pool, 0), g.desired) if g.role == "training" and g.orchestrator == "slurm" else 0
        left[g.pool] = left.get(g.pool, 0) - held
        out.append(Consumer(pool=g.pool, role=g.role, nodes=g.desired - held))
    return out


def tally(pools: Iterable[Pool], consumers: Iterable[Consumer], *,
          in_flight: Mapping[str, int] | None = None) -> list[PoolUsage]:
    """Sum the consumers' nodes per role per pool, in the order of ``pools``.

    Consumers of pools not in ``pools`` are not counted (a report of some pools only).
    """
    held: dict[str, dict[str, int]] = {}
    for consumer in consumers:
        roles = held.setdefault(consumer.pool, {})
        roles[consumer.role] = roles.get(consumer.role, 0) + consumer.nodes
    usage = []
    for pool in pools:
        roles = dict(sorted(held.get(pool.name, {}).items()))
        usage.append(PoolUsage(name=pool.name, instance_type=pool.instance_type, az_id=pool.az_id,
                               count=pool.count, kind=str(pool.kind), consumers=roles, spares=pool.spares,
                               free=pool.count - sum(roles.values()) - pool.spares,
                               in_flight=(in_flight or {}).get(pool.name, 0),
                               start_time=pool.start_time, end_time=pool.end_time,
                               price_usd_per_hour=pool.price_usd_per_hour,
                               unused_billed_to=str(pool.unused_billed_to) if pool.unused_billed_to else None))
    return usage

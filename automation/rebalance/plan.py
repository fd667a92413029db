"""Planning a move, pure: check the request against the inventory, then against what AWS shows.

Two stages so that bad flags fail before any AWS call: ``resolve`` needs only the inventory;
``make_plan`` needs the observed node groups and the orchestrator's view of the source nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gpufleet.automation.auto_scaling import GroupObs
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup
from gpufleet.automation.orchestrators.base import NodeWork
from gpufleet.infra.capacity import LiveGroup, PoolUsage, held_consumers, tally
from gpufleet.infra.contract import PoolOutput
from gpufleet.infra.errors import BadInputError


@dataclass(frozen=True, kw_only=True)
class MoveRequest:
    from_role: str
    """Consumer role giving nodes (training, inference)."""
    to_role: str
    """Consumer role receiving them."""
    nodes: int
    """How many nodes move."""
    pool: str | None = None
    """Pool to move within; inferred when the two roles share exactly one."""


@dataclass(frozen=True, kw_only=True)
class Binding:
    """The pool and the two node groups a request resolves to."""

    pool: PoolOutput
    source: StackNodeGroup
    dest: StackNodeGroup
    others: tuple[StackNodeGroup, ...] = ()
    """Other consumers of the pool: they count in the pool invariant."""

    @property
    def groups(self) -> tuple[StackNodeGroup, ...]:
        return (self.source, self.dest, *self.others)

    def usage(self, desired: Mapping[str, int]) -> PoolUsage:
        """The pool's tally given each group's desired size (by Auto Scaling group name)."""
        groups = (LiveGroup(pool=self.pool.name, role=g.role, orchestrator=g.group.orchestrator,
                            desired=desired[g.group.asg_name]) for g in self.groups)
        [usage] = tally([self.pool], held_consumers(groups, {self.pool.name: self.pool.spares}))
        return usage


@dataclass(frozen=True, kw_only=True)
class Victim:
    instance_id: str
    busy: bool
    last_checkpoint: float | None
    reason: str
    """Why it was picked: idle, or how recent its checkpoint is."""


@dataclass(kw_only=True)
class MovePlan:
    """What a move will do; the journal stores it as the operation's plan."""

    pool: str
    instance_type: str
    pool_count: int
    from_role: str
    to_role: str
    nodes: int
    source_stack: str
    source_group: str
    source_asg: str
    dest_stack: str
    dest_group: str
    dest_asg: str
    source_desired_before: int
    dest_desired_before: int
    dest_instances_before: list[str]
    """Destination instances before the move: the new ones are the others."""
    source_orchestrator: str
    dest_orchestrator: str
    victims: list[Victim]
    before: dict[str, int]
    """Pool ledger before: consumer role -> desired nodes."""
    after: dict[str, int]
    free_before: int
    free_after: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MovePlan:
        fields = dict(doc)
        fields["victims"] = [Victim(**v) for v in doc["victims"]]
        return cls(**fields)


def resolve(inventory: FleetInventory, request: MoveRequest) -> Binding:
    """Check the request against the inventory alone; BadInputError names the flag and value."""
    roles = sorted({g.role for g in inventory.node_groups})
    for flag, role in (("--from", request.from_role), ("--to", request.to_role)):
        if role not in roles:
            raise BadInputError(f"{flag} {role!r}: no consumer stack has that role",
                                f"roles in {inventory.source or 'the inventory'}: {', '.join(roles) or 'none'}")
    if request.from_role == request.to_role:
        raise BadInputError(f"--from and --to are both {request.from_role!r}", "move between two different roles")
    if request.nodes < 1:
        raise BadInputError(f"--nodes {request.nodes}: must be at least 1")
    shared = sorted({g.group.pool for g in inventory.groups_of(request.from_role)}
                    & {g.group.pool for g in inventory.groups_of(request.to_role)})
    if request.pool is None:
        if len(shared) != 1:
            raise BadInputError(f"{request.from_role} and {request.to_role} share {len(shared)} pools; name one with --pool",
                                f"shared pools: {', '.join(shared) or 'none'}")
        pool_name = shared[0]
    else:
        pool_name = request.pool
        known = sorted(p.name for p in inventory.pools)
        if pool_name not in known:
            raise BadInputError(f"--pool {pool_name!r}: no such pool", f"pools: {', '.join(known) or 'none'}")
        if pool_name not in shared:
            raise BadInputError(f"--pool {pool_name!r} is not used by both {request.from_role} and {request.to_role}",
                                f"shared pools: {', '.join(shared) or 'none'}")
    pool = inventory.pool(pool_name)
    source = inventory.own_groups_of(request.from_role, pool_name)[0]
    dest = inventory.own_groups_of(request.to_role, pool_name)[0]
    if request.nodes > pool.count:
        raise BadInputError(f"--nodes {request.nodes}: pool {pool_name} holds only {pool.count} nodes")
    others = tuple(g for g in inventory.node_groups if g.group.pool == pool_name and g not in (source, dest))
    return Binding(pool=pool, source=source, dest=dest, others=others)


def choose_victims(candidates: Sequence[str], work: Sequence[NodeWork], n: int) -> list[Victim]:
    """The ``n`` nodes whose loss costs least: idle first, then the most recently checkpointed.

    A busy node without a published checkpoint time counts as the most expensive to lose.
    """
    by_id = {w.instance_id: w for w in work}

    def cost(instance_id: str) -> tuple[int, float, str]:
        w = by_id.get(instance_id, NodeWork(instance_id=instance_id, known=False))
        if not w.busy:
            return (0, 0.0, instance_id)
        return (1, -(w.last_checkpoint if w.last_checkpoint is not None else float("-inf")), instance_id)

    picked = sorted(candidates, key=cost)[:n]
    victims = []
    for instance_id in picked:
        w = by_id.get(instance_id, NodeWork(instance_id=instance_id, known=False))
        if not w.busy:
            reason = "idle" if w.known else "idle (not known to the orchestrator)"
        elif w.last_checkpoint is None:
            reason = "busy, no checkpoint published"
        else:
            reason = f"busy, checkpointed at {w.last_checkpoint:.0f}"
        victims.append(Victim(instance_id=instance_id, busy=w.busy, last_checkpoint=w.last_checkpoint, reason=reason))
    return victims


def make_plan(binding: Binding, request: MoveRequest, observed: Mapping[str, GroupObs],
              work: Sequence[NodeWork]) -> MovePlan:
    """Check the move against the observed groups and pick the victims."""
    pool, source, dest, n = binding.pool, binding.source, binding.dest, request.nodes
    src, dst = observed[source.group.asg_name], observed[dest.group.asg_name]
    desired = {g.group.asg_name: observed[g.group.asg_name].desired for g in binding.groups}
    before = binding.usage(desired)
    after = binding.usage({**desired, src.asg_name: src.desired - n, dst.asg_name: dst.desired + n})
    spares = {w.instance_id for w in work if w.spare}  # the pool's hot spares: no consumer's, never moved
    candidates = [i for i in src.in_service if i not in spares]
    where_src, where_dst = f"{source.stack}/{source.group.name}", f"{dest.stack}/{dest.group.name}"
    if len(candidates) < n:
        held = f"; {len(spares)} more held as hot spares" if spares else ""
        raise BadInputError(f"--nodes {n}: {where_src} has only {len(candidates)} InService nodes "
                            f"(desired {src.desired}{held})")
    if src.desired - n < src.min_size:
        raise BadInputError(f"--nodes {n}: {where_src} would go to {src.desired - n} nodes, below its minimum {src.min_size}")
    if dst.desired + n > dst.max_size:
        raise BadInputError(f"--nodes {n}: {where_dst} would grow to {dst.desired + n} nodes, "
                            f"above its maximum {dst.max_size}")
    if after.free < 0:
        raise BadInputError(f"--nodes {n}: pool {pool.name} would be over-committed "
                            f"({after.used} desired > {pool.count} reserved)")
    return MovePlan(
        pool=pool.name, instance_type=pool.instance_type, pool_count=pool.count,
        from_role=source.role, to_role=dest.role, nodes=n,
        source_stack=source.stack, source_group=source.group.name, source_asg=source.group.asg_name,
        dest_stack=dest.stack, dest_group=dest.group.name, dest_asg=dest.group.asg_name,
        source_desired_before=src.desired, dest_desired_before=dst.desired,
        dest_instances_before=dst.live, source_orchestrator=source.orchestrator,
        dest_orchestrator=dest.orchestrator, victims=choose_victims(candidates, work, n),
        before=dict(before.consumers), after=dict(after.consumers), free_before=before.free, free_after=after.free,
    )

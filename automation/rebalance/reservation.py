"""Moves between a consumer and the pool's reservation itself (the ``released`` side).

Two kinds, planned here and driven by the same engine, journal and lease as a move between roles:

- **give back** (``--to released``): the victims are checkpointed, drained and terminated with the
  source's desired size decremented, and nothing is acquired: the slots go back to the reservation.
  The scheduler gives a Capacity Block's training nodes back this way before EC2 starts
  terminating them (the block's end less ``CAPACITY_BLOCK_TERMINATION_LEAD``).
- **take free** (``--from released``): nothing is drained; the destination's desired size is raised
  into the pool's free slots, and the new nodes are gated and joined like any move's.

The plan has the same shape as any move's; the reservation side has no stack, group or Auto
Scaling group (empty strings), desired 0 and no instances, so the journal, ``rebalance ls`` and
the reconciler read it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gpufleet.automation.auto_scaling import GroupObs
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup
from gpufleet.automation.orchestrators.base import NodeWork
from gpufleet.automation.rebalance.plan import MovePlan, MoveRequest, choose_victims
from gpufleet.infra.capacity import Consumer, tally
from gpufleet.infra.errors import BadInputError

RESERVATION = "released"
"""The side of a move that is the pool's reservation, used by no consumer."""


def involves_reservation(request: MoveRequest) -> bool:
    return RESERVATION in (request.from_role, request.to_role)


def gives_back(plan: MovePlan) -> bool:
    """The move ends in the reservation: nothing to acquire, gate or join."""
    return plan.to_role == RESERVATION


def takes_free(plan: MovePlan) -> bool:
    """The move starts from the reservation's free slots: nothing to checkpoint, drain or release."""
    return plan.from_role == RESERVATION


def _consumer(inventory: FleetInventory, request: MoveRequest) -> StackNodeGroup:
    """The one consumer group of the request, checked against the inventory (BadInputError names the flag)."""
    if request.from_role == request.to_role:
        raise BadInputError(f"--from and --to are both {request.from_role!r}", "move between two different sides")
    flag, role = ("--to", request.to_role) if request.from_role == RESERVATION else ("--from", request.from_role)
    roles = sorted({g.role for g in inventory.node_groups})
    if role not in roles:
        raise BadInputError(f"{flag} {role!r}: no consumer stack has that role",
                            f"roles in {inventory.source or 'the inventory'}: {', '.join(roles) or 'none'}")
    if request.nodes < 1:
        raise BadInputError(f"--nodes {request.nodes}: must be at least 1")
    pools = sorted({g.group.pool for g in inventory.groups_of(role)})
    pool = request.pool
    if pool is None:
        if len(pools) != 1:
            raise BadInputError(f"{role} uses {len(pools)} pools; name one with --pool", f"its pools: {', '.join(pools) or 'none'}")
        pool = pools[0]
    elif pool not in pools:
        raise BadInputError(f"--pool {pool!r} is not used by {role}", f"its pools: {', '.join(pools) or 'none'}")
    return inventory.own_groups_of(role, pool)[0]


def check_reservation_request(inventory: FleetInventory, request: MoveRequest) -> StackNodeGroup:
    """An operator's move to or from ``released`` (``gpufleet rebalance``), checked against the
    inventory alone: the consumer group, and a pool that has a reservation to give back to or take
    from (an on-demand pool has none: its nodes are simply launched or terminated)."""
    group = _consumer(inventory, request)
    pool = inventory.pool(group.group.pool)
    if pool.reservation_id is None:
        flag = "--to" if request.to_role == RESERVATION else "--from"
        raise BadInputError(f"{flag} {RESERVATION}: pool {pool.name} is {pool.kind} and has no capacity reservation",
                            "only a pool on an ODCR or a Capacity Block has slots to give back or take; "
                            "move between training and inference instead")
    return group


def plan_reservation_move(inventory: FleetInventory, request: MoveRequest, observe: Callable[[str, str], GroupObs],
                          work: Callable[[StackNodeGroup, Sequence[str]], Sequence[NodeWork]], *,
                          group: StackNodeGroup | None = None) -> MovePlan:
    """Check the move against the inventory, then the observed groups (``observe(stack, asg)``), and
    pick the victims of a give-back from the consumer's work (``work(group, in_service)``).
    ``group``: the consumer group when it is not the role's own (the scheduler's lent group)."""
    group = group or _consumer(inventory, request)
    pool = inventory.pool(group.group.pool)
    members = [g for g in inventory.node_groups if g.group.pool == pool.name]
    observed = {g.group.asg_name: observe(g.stack, g.group.asg_name) for g in members}
    desired = {g.group.asg_name: observed[g.group.asg_name].desired for g in members}
    mine, n = observed[group.group.asg_name], request.nodes
    where = f"{group.stack}/{group.group.name}"
    back = request.to_role == RESERVATION
    change = -n if back else n

    def usage(sizes: dict[str, int]):  # noqa: ANN202 - PoolUsage
        [out] = tally([pool], (Consumer(pool=pool.name, role=g.role, nodes=sizes[g.group.asg_name]) for g in members))
        return out

    before = usage(desired)
    after = usage({**desired, group.group.asg_name: mine.desired + change})
    if back:
        if len(mine.in_service) < n:
            raise BadInputError(f"--nodes {n}: {where} has only {len(mine.in_service)} InService nodes (desired {mine.desired})")
        if mine.desired - n < mine.min_size:
            raise BadInputError(f"--nodes {n}: {where} would go to {mine.desired - n} nodes, below its minimum {mine.min_size}")
        victims = choose_victims(mine.in_service, work(group, mine.in_service), n)
    else:
        if mine.desired + n > mine.max_size:
            raise BadInputError(f"--nodes {n}: {where} would grow to {mine.desired + n} nodes, above its maximum {mine.max_size}")
        if after.free < 0:
            raise BadInputError(f"--nodes {n}: pool {pool.name} has only {before.free} free node(s)")
        victims = []
    side = {"stack": group.stack, "group": group.group.name, "asg": group.group.asg_name, "orchestrator": group.orchestrator}
    none = {"stack": "", "group": "", "asg": "", "orchestrator": "none"}
    source, dest = (side, none) if back else (none, side)
    return MovePlan(
        pool=pool.name, instance_type=pool.instance_type, pool_count=pool.count,
        from_role=request.from_role, to_role=request.to_role, nodes=n,
        source_stack=source["stack"], source_group=source["group"], source_asg=source["asg"],
        dest_stack=dest["stack"], dest_group=dest["group"], dest_asg=dest["asg"],
        source_desired_before=mine.desired if back else 0, dest_desired_before=0 if back else mine.desired,
        dest_instances_before=[] if back else list(mine.live), source_orchestrator=source["orchestrator"],
        dest_orchestrator=dest["orchestrator"], victims=victims,
        before=dict(before.consumers), after=dict(after.consumers), free_before=before.free, free_after=after.free,
        notes=["the nodes go back to the reservation: nothing is acquired" if back
               else "the nodes come from the pool's free slots: nothing is drained"],
    )

"""`gpufleet status`: the live capacity ledger of the fleet, read from AWS.

Per pool: the reservation's count (DescribeCapacityReservations in the platform account), the nodes
each consumer role holds (the desired sizes of its Auto Scaling groups, less the pool's hot spares in
the training Slurm group that holds them), the spares, what is free, and the nodes
of rebalances still in flight (journal operations in a non-terminal state): a ``PoolUsage``, the
shape ``gpufleet plan --json`` prints too, so a plan and a live fleet compare key by key. Per node
group: desired, live, in service and healthy instances (the words of
``gpufleet.automation.auto_scaling``). And the inventory's age, with the stacks updated since.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from gpufleet.automation.auto_scaling import GroupObs, read_groups
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup
from gpufleet.automation.inventory_age import InventoryAge, inventory_age
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Journal
from gpufleet.automation.rebalance.state import TERMINAL
from gpufleet.infra.capacity import Consumer, LiveGroup, PoolUsage, held_consumers, tally
from gpufleet.infra.errors import BadInputError


@dataclass(kw_only=True)
class NodeGroupStatus:
    """One node group as its Auto Scaling group is now (the keys of a node group everywhere: docs/json.md)."""

    stack: str
    role: str
    name: str
    pool: str
    instance_type: str
    asg_name: str
    desired: int
    """The live size (DesiredCapacity; the rebalancer owns it)."""
    live: int
    """Instances in the group not on their way out."""
    in_service: int
    """InService instances."""
    healthy: int
    """InService and Healthy."""
    min_nodes: int
    max_nodes: int
    orchestrator: str
    problem: str | None = None
    """Why the group could not be read (e.g. the Auto Scaling group does not exist)."""


@dataclass(kw_only=True)
class MoveStatus:
    op_id: str
    state: str
    pool: str
    from_role: str
    to_role: str
    nodes: int


@dataclass(kw_only=True)
class FleetStatus:
    pools: list[PoolUsage]
    """The live ledger: reservation counts, desired nodes per role, free, in flight."""
    node_groups: list[NodeGroupStatus]
    moves: list[MoveStatus]
    """Rebalances in flight (non-terminal journal operations)."""
    source: str
    """The inventory file read."""
    inventory: InventoryAge
    """When the inventory was collected, and the stacks updated since."""

    def to_dict(self) -> dict[str, Any]:
        return {"pools": [p.to_dict() for p in self.pools], "node_groups": [asdict(g) for g in self.node_groups],
                "moves": [asdict(m) for m in self.moves], "source": self.source, "inventory": self.inventory.to_dict()}


def select_pools(inventory: FleetInventory, names: Sequence[str]) -> list[str]:
    """The pools to report; unknown names are bad input (checked before any AWS call)."""
    known = [p.name for p in inventory.pools]
    for name in names:
        if name not in known:
            raise BadInputError(f"--pool {name!r}: no such pool in {inventory.source}", f"pools: {', '.join(known)}")
    return list(names) or known


def fleet_status(inventory: FleetInventory, access: AwsAccess, *, pools: Sequence[str] = (),
                 on_step: Callable[[str], None] | None = None) -> FleetStatus:
    """Read reservations, Auto Scaling groups and the journal (accounts in parallel)."""
    say = on_step or (lambda _s: None)
    wanted = select_pools(inventory, pools)
    groups = [g for g in inventory.node_groups if g.group.pool in wanted]
    platform = inventory.platform_stack
    say("connecting to the accounts")
    ec2 = access.client(platform, "ec2")
    ddb = access.client(platform, "dynamodb", passthrough=CONTROL_FLOW)
    stacks = sorted({g.stack for g in groups})
    asg_clients = {stack: access.client(stack, "autoscaling") for stack in stacks}

    def reservations() -> dict[str, dict[str, Any]]:
        ids = [p.reservation_id for p in inventory.pools if p.name in wanted and p.reservation_id]
        if not ids:
            return {}
        found = ec2.describe_capacity_reservations(CapacityReservationIds=ids)["CapacityReservations"]
        return {r["CapacityReservationId"]: r for r in found}

    def asgs(stack: str) -> dict[str, GroupObs]:
        return read_groups(asg_clients[stack], [g.group.asg_name for g in groups if g.stack == stack],
                           f"{stack} account")

    def moves() -> list[MoveStatus]:
        ops = Journal(ddb, inventory.journal_table).list_ops(in_flight_only=True)
        out = []
        for op in ops:
            if op.state in TERMINAL:
                continue
            plan = op.body.get("plan") or {}
            out.append(MoveStatus(op_id=op.op_id, state=op.state.value, pool=str(plan.get("pool", "")),
                                  from_role=str(plan.get("from_role", "")), to_role=str(plan.get("to_role", "")),
                                  nodes=int(plan.get("nodes", 0))))
        return out

    say(f"reading {len(wanted)} reservations, {len(groups)} Auto Scaling groups in {len(stacks)} accounts, the journal")
    with ThreadPoolExecutor(max_workers=3 + len(stacks)) as workers:
        f_res, f_moves = workers.submit(reservations), workers.submit(moves)
        f_age = workers.submit(inventory_age, inventory, state_client=access.state_client)
        f_asgs = {stack: workers.submit(asgs, stack) for stack in stacks}
        found_res, found_moves, age = f_res.result(), f_moves.result(), f_age.result()
        found_asgs = {stack: f.result() for stack, f in f_asgs.items()}

    group_status = [_group_status(g, found_asgs[g.stack].get(g.group.asg_name)) for g in groups]
    # The reservation's live count where there is one; the declared count of an on-demand pool.
    live_pools = [dataclasses.replace(p, count=int(found_res[p.reservation_id]["TotalInstanceCount"]))
                  if p.reservation_id in found_res else p for p in inventory.pools if p.name in wanted]
    in_flight: dict[str, int] = {}
    for m in found_moves:
        in_flight[m.pool] = in_flight.get(m.pool, 0) + m.nodes
    usage = tally(live_pools, _consumers(group_status, {p.name: p.spares for p in live_pools}), in_flight=in_flight)
    return FleetStatus(pools=usage, node_groups=group_status, moves=[m for m in found_moves if m.pool in wanted],
                       source=inventory.source, inventory=age)


def _consumers(groups: Sequence[NodeGroupStatus], spares: dict[str, int]) -> list[Consumer]:
    return held_consumers((LiveGroup(pool=g.pool, role=g.role, orchestrator=g.orchestrator, desired=g.desired)
                           for g in groups), spares)


def _group_status(ref: StackNodeGroup, asg: GroupObs | None) -> NodeGroupStatus:
    group = ref.group
    base = {"stack": ref.stack, "role": ref.role, "name": group.name, "pool": group.pool,
            "instance_type": group.instance_type, "asg_name": group.asg_name, "orchestrator": group.orchestrator}
    if asg is None:
        return NodeGroupStatus(**base, desired=0, live=0, in_service=0, healthy=0, min_nodes=group.min_nodes,
                               max_nodes=group.max_nodes, problem=f"Auto Scaling group {group.asg_name} not found")
    return NodeGroupStatus(**base, desired=asg.desired, min_nodes=asg.min_size, max_nodes=asg.max_size,
                           live=len(asg.live), in_service=len(asg.in_service), healthy=len(asg.healthy))

"""`gpufleet status`: the live capacity ledger of the fleet, read from AWS.

Per pool: the reservation's count (DescribeCapacityReservations in the platform account), the nodes
each consumer role holds (the desired sizes of its Auto Scaling groups), what is free, and the nodes
of rebalances still in flight (journal operations in a non-terminal state). Per node group: desired,
running and healthy (InService and Healthy) instances. The pool entries have the keys of
``gpufleet plan --json`` pools plus ``in_flight``, so a plan and a live fleet compare directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import FleetInventory, NodeGroupRef
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Journal
from gpufleet.automation.rebalance.state import TERMINAL
from gpufleet.infra.errors import BadInputError

GONE = frozenset({"Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached"})
"""Lifecycle states of instances that no longer count as running in their group."""
@dataclass(kw_only=True)
class PoolStatus:
    name: str
    instance_type: str
    az_id: str
    count: int
    """Instances the reservation holds now (TotalInstanceCount), the inventory's count without one."""
    kind: str
    consumers: dict[str, int] = field(default_factory=dict)
    """Stack role -> desired nodes of its groups on this pool."""
    free: int = 0
    """count minus the consumers' nodes (negative: over-committed)."""
    in_flight: int = 0
    """Nodes of rebalances of this pool that have not finished or rolled back."""


@dataclass(kw_only=True)
class NodeGroupStatus:
    stack: str
    role: str
    name: str
    pool: str
    asg_name: str
    desired: int
    running: int
    """Instances in the group that are not terminating or detached."""
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
    pools: list[PoolStatus]
    node_groups: list[NodeGroupStatus]
    moves: list[MoveStatus]
    """Rebalances in flight (non-terminal journal operations)."""
    source: str
    """The inventory file read."""

    def to_dict(self) -> dict[str, Any]:
        return {"pools": [asdict(p) for p in self.pools], "node_groups": [asdict(g) for g in self.node_groups],
                "moves": [asdict(m) for m in self.moves], "source": self.source}


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
    groups = [g for g in inventory.node_groups if g.pool in wanted]
    platform = inventory.journal_stack
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

    def asgs(stack: str) -> dict[str, dict[str, Any]]:
        names = [g.asg_name for g in groups if g.stack == stack]
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(names), 50):  # the API takes at most 50 names per call
            pages = asg_clients[stack].get_paginator("describe_auto_scaling_groups").paginate(
                AutoScalingGroupNames=names[start:start + 50])
            for page in pages:
                out.update({a["AutoScalingGroupName"]: a for a in page["AutoScalingGroups"]})
        return out

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
    with ThreadPoolExecutor(max_workers=2 + len(stacks)) as pool:
        f_res, f_moves = pool.submit(reservations), pool.submit(moves)
        f_asgs = {stack: pool.submit(asgs, stack) for stack in stacks}
        found_res, found_moves = f_res.result(), f_moves.result()
        found_asgs = {stack: f.result() for stack, f in f_asgs.items()}

    group_status = [_group_status(g, found_asgs[g.stack].get(g.asg_name)) for g in groups]
    pool_status = []
    for ref in inventory.pools:
        if ref.name not in wanted:
            continue
        live = found_res.get(ref.reservation_id or "")
        consumers: dict[str, int] = {}
        for g in group_status:
            if g.pool == ref.name:
                consumers[g.role] = consumers.get(g.role, 0) + g.desired
        count = int(live["TotalInstanceCount"]) if live else ref.count
        pool_status.append(PoolStatus(
            name=ref.name, instance_type=ref.instance_type, az_id=ref.az_id, count=count, kind=ref.kind,
            consumers=consumers, free=count - sum(consumers.values()),
            in_flight=sum(m.nodes for m in found_moves if m.pool == ref.name)))
    return FleetStatus(pools=pool_status, node_groups=group_status,
                       moves=[m for m in found_moves if m.pool in wanted], source=inventory.source)


def _group_status(ref: NodeGroupRef, asg: dict[str, Any] | None) -> NodeGroupStatus:
    base = {"stack": ref.stack, "role": ref.role, "name": ref.name, "pool": ref.pool, "asg_name": ref.asg_name,
            "orchestrator": ref.orchestrator}
    if asg is None:
        return NodeGroupStatus(**base, desired=0, running=0, healthy=0, min_nodes=ref.min_nodes,
                               max_nodes=ref.max_nodes, problem=f"Auto Scaling group {ref.asg_name} not found")
    instances = asg.get("Instances", [])
    return NodeGroupStatus(
        **base, desired=int(asg["DesiredCapacity"]), min_nodes=int(asg["MinSize"]), max_nodes=int(asg["MaxSize"]),
        running=sum(1 for i in instances if i.get("LifecycleState") not in GONE),
        healthy=sum(1 for i in instances if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"),
    )

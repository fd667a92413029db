"""`gpufleet schedule reconcile`: one idempotent pass of the scheduler.

A pass reads the fleet (the stack-output contract and the node groups' desired sizes), the
journal (moves in flight), the serving signals (``signals.py``), calls ``decide()`` unchanged,
advances every in-flight move one step-mode pass (``Executor.step``) and starts the moves the
decision orders, each under its pool's lease. Running it twice changes nothing the first did not:
a pool with a move in flight starts no other (the lease is per pool), and the fleet counts what
is on its way.

Orders to or from ``released`` go through the same engine (``rebalance/reservation.py``): a
Capacity Block's training is checkpointed, drained and given back to the reservation before EC2
starts terminating it, and free slots are taken like any move's nodes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.rebalance.engine import Executor
from gpufleet.automation.rebalance.journal import Operation
from gpufleet.automation.rebalance.plan import MovePlan, MoveRequest
from gpufleet.automation.rebalance.preempt import PREEMPT_REASON, PREEMPTS, preempted_by
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.lend_pass import Lending
from gpufleet.automation.schedule.model import Move, PoolFleet, Side, deadlines_of
from gpufleet.automation.schedule.preempt import nodes_back, preempt_reason
from gpufleet.automation.schedule.signals import PrometheusSource, read_signals
from gpufleet.infra.errors import ConflictError, GpufleetError
from gpufleet.infra.model import PoolSchedule

LEAVING = frozenset({MoveState.PLANNED, MoveState.LOCKED, MoveState.CHECKPOINTING, MoveState.DRAINED})
"""The source's desired size still counts the victims."""
ARRIVED = frozenset({MoveState.ACQUIRED, MoveState.HEALTHY, MoveState.JOINED})
"""The destination's desired size already counts the new nodes."""


@dataclass(frozen=True, kw_only=True)
class MoveReport:
    """A move this pass started or advanced."""

    op_id: str
    """The journaled operation (empty when it could not be started)."""
    pool: str
    """Pool name."""
    from_role: str
    """Source side."""
    to_role: str
    """Destination side."""
    nodes: int
    """How many nodes."""
    state: str
    """Its state after this pass."""
    note: str = ""
    """What it waits for, or why it did not act."""


@dataclass(kw_only=True)
class PassResult:
    """What one pass saw and did (``--json`` prints it)."""

    now: str
    """The instant decided for (ISO 8601, UTC)."""
    targets: list[dict[str, Any]] = field(default_factory=list)
    """The decision's split per pool."""
    advanced: list[MoveReport] = field(default_factory=list)
    """In-flight moves this pass stepped."""
    started: list[MoveReport] = field(default_factory=list)
    """Moves this pass started (and stepped)."""
    findings: list[str] = field(default_factory=list)
    """The decision's findings and what the pass could not do."""
    seconds: float = 0.0
    """How long the pass took."""


def _side(role: str) -> Side:
    return Side(role) if role in {s.value for s in Side} else Side.RELEASED


def _waiting_for(executor: Executor, op: Operation) -> str:
    events = [e for e in executor.journal.events(op.op_id) if e.event_type == "wait"]
    return str(events[-1].detail.get("for", "")) if events and op.state not in {MoveState.DONE, MoveState.ROLLED_BACK} else ""


def fleet_of(inventory: FleetInventory, schedules: Sequence[PoolSchedule], desired: Mapping[str, int],
             in_flight: Sequence[Operation]) -> tuple[dict[str, PoolFleet], list[Move]]:
    """The decision's view: per pool, nodes settled in each role (desired sizes less what is on its
    way), and the in-flight moves as the decision counts them."""
    fleet: dict[str, PoolFleet] = {}
    moves: list[Move] = []
    adjust: dict[tuple[str, str], int] = {}
    for op in in_flight:
        plan = MovePlan.from_dict(op.body["plan"])
        source, dest = plan.from_role, plan.to_role
        if op.state is MoveState.ROLLING_BACK:
            source, dest = dest, source  # the capacity goes back where it came from
            adjust[(plan.pool, plan.from_role)] = adjust.get((plan.pool, plan.from_role), 0) - plan.nodes
            adjust[(plan.pool, plan.to_role)] = adjust.get((plan.pool, plan.to_role), 0)
        elif op.state in LEAVING:
            adjust[(plan.pool, source)] = adjust.get((plan.pool, source), 0) - plan.nodes
        elif op.state in ARRIVED:
            adjust[(plan.pool, dest)] = adjust.get((plan.pool, dest), 0) - plan.nodes
        moves.append(Move(pool=plan.pool, source=_side(source), dest=_side(dest), nodes=plan.nodes))
    for schedule in schedules:
        pool = inventory.pool(schedule.pool)
        per_role = {role: sum(desired.get(g.group.asg_name, 0) for g in inventory.groups_of(role, pool.name)
                              if not g.group.lent_reservation_id)
                    for role in ("inference", "training")}
        # training in the pool's lent slots (an interruptible reservation) is not training's own
        lent = max(0, adjust.get((pool.name, "lent"), 0) + sum(
            desired.get(g.group.asg_name, 0) for g in inventory.groups_of("training", pool.name)
            if g.group.lent_reservation_id))
        # The spares are launched in the training group: its desired size counts them, the split does not.
        fleet[pool.name] = PoolFleet(pool=pool.name, count=pool.count, spares=pool.spares,
                                     inference=max(0, per_role["inference"] + adjust.get((pool.name, "inference"), 0)),
                                     training=max(0, per_role["training"] - pool.spares
                                                  + adjust.get((pool.name, "training"), 0)),
                                     lent=lent)
    return fleet, moves


ExecutorFor = Callable[[], Executor]
"""A fresh executor for one move (its own lease state), sharing the pass's clients and journal."""


def reconcile_pass(inventory: FleetInventory, schedules: Sequence[PoolSchedule], executor_for: ExecutorFor,
                   desired: Callable[[], dict[str, int]], *, now: dt.datetime | None = None,
                   signals: PrometheusSource | None = None, gate: Mapping[str, Any] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> PassResult:
    """One pass at ``now`` (aware; default the wall clock). ``desired()``: every node group's desired
    size by Auto Scaling group name; ``gate``: the gate choice journaled with each new move."""
    began = clock()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    result = PassResult(now=now.isoformat())
    reader = executor_for()
    scheduled = {s.pool for s in schedules}
    flying = reader.journal.list_ops(in_flight_only=True)
    stopping = preempted_by(flying)
    for op in flying:
        plan = MovePlan.from_dict(op.body["plan"])
        if plan.pool not in scheduled:
            continue
        if op.op_id in stopping:  # the give-back pre-empting it stops it, at its own step
            result.advanced.append(MoveReport(op_id=op.op_id, pool=plan.pool, from_role=plan.from_role,
                                              to_role=plan.to_role, nodes=plan.nodes, state=str(op.state),
                                              note=f"pre-empted by {stopping[op.op_id]}"))
            continue
        result.advanced.append(_step(executor_for(), op, plan))
    in_flight = [op for op in reader.journal.list_ops(in_flight_only=True)
                 if MovePlan.from_dict(op.body["plan"]).pool in scheduled]
    seen = desired()
    fleet, moves = fleet_of(inventory, schedules, seen, in_flight)
    recent, notes = read_signals(signals, schedules, now)
    result.findings.extend(notes)
    decision = decide(now, schedules, fleet, moves, recent, deadlines_of(inventory.pools))
    result.targets = [{"pool": t.pool, "inference": t.inference, "training": t.training, "scheduled": t.scheduled,
                       "reason": t.reason} for t in decision.targets]
    result.findings.extend(decision.findings)
    busy = {m.pool for m in moves}
    deadlines = deadlines_of(inventory.pools)
    drain = {s.pool: s.drain_minutes for s in schedules}
    lending = Lending(inventory, schedules, executor_for, seen, decision.targets)
    result.findings.extend(lending.settle(busy))  # the lent slots, before the orders that use them
    # One move a pool at a time: a drain of training into the reservation (a Capacity Block's
    # deadline) goes before any other order of its pool, and pre-empts a move in flight that it
    # cannot wait for (schedule/preempt.py).
    for order in sorted(decision.moves, key=lambda m: not (m.source is Side.TRAINING and m.dest is Side.RELEASED)):
        if lending.carries(order):
            lent = lending.start(order, gate, busy)
            result.findings.append(lent) if isinstance(lent, str) else result.started.append(_step(*lent))
            continue
        ledger = {role: sum(seen.get(g.group.asg_name, 0) for g in inventory.groups_of(role, order.pool))
                  for role in (order.source.value, order.dest.value)}
        if order.pool in busy:
            pool_flying = [op for op in in_flight if MovePlan.from_dict(op.body["plan"]).pool == order.pool]
            why = None
            if (order.source is Side.TRAINING and order.dest is Side.RELEASED and order.pool in deadlines
                    and len(pool_flying) == 1 and not preempted_by(pool_flying)):
                why = preempt_reason(now, deadlines[order.pool], drain[order.pool], reader.journal, pool_flying[0])
            if why is None:
                result.findings.append(f"pool {order.pool}: {order.nodes} node(s) {order.source} -> {order.dest} wait "
                                       "for the move in flight (one move a pool at a time)")
                continue
            [victim] = pool_flying
            result.findings.append(f"pool {order.pool}: the give-back pre-empts {victim.op_id}: {why}")
            result.started.append(_start(executor_for(), order, gate, ledger, nodes=order.nodes + nodes_back(victim),
                                         **{PREEMPTS: victim.op_id, PREEMPT_REASON: why}))
            continue
        busy.add(order.pool)
        result.started.append(_start(executor_for(), order, gate, ledger))
    result.findings.extend(lending.after(result.started))
    result.seconds = round(clock() - began, 3)
    return result


def _step(executor: Executor, op: Operation, plan: MovePlan) -> MoveReport:
    report = {"op_id": op.op_id, "pool": plan.pool, "from_role": plan.from_role, "to_role": plan.to_role,
              "nodes": plan.nodes}
    try:
        op = executor.step(op)
    except ConflictError as err:
        return MoveReport(**report, state=str(op.state), note=f"not ours this pass: {err.message}")
    except GpufleetError as err:
        return MoveReport(**report, state=str((executor.journal.load(op.op_id) or op).state), note=err.message)
    note = _waiting_for(executor, op) if op.state is not MoveState.ROLLED_BACK else \
        str(op.body.get("progress", {}).get("rollback_reason", ""))
    return MoveReport(**report, state=str(op.state), note=note)


def _start(executor: Executor, order: Move, gate: Mapping[str, Any] | None, ledger: Mapping[str, int], *,
           nodes: int | None = None, **extra: Any) -> MoveReport:
    """Plan the order (``nodes``: more than it says, for a pre-emption's) and step it; refused when
    the pool changed since the pass read it (``ledger``: the desired nodes per role the decision
    saw). The engine then re-checks the plan under the lease. ``extra``: kept in the journaled body;
    with ``PREEMPTS`` the pool's lease is the pre-empted move's, so it is not checked here."""
    nodes = nodes or order.nodes
    report = {"pool": order.pool, "from_role": order.source.value, "to_role": order.dest.value, "nodes": nodes}
    holder = executor.leases.holder(order.pool)
    if (holder is not None and holder.expires_at > executor.journal.clock()
            and holder.op_id != extra.get(PREEMPTS)):
        return MoveReport(**report, op_id="", state="NOT_STARTED", note=f"pool leased by {holder.kind} {holder.op_id}")
    try:
        plan = executor.plan(MoveRequest(from_role=order.source.value, to_role=order.dest.value, nodes=nodes,
                                         pool=order.pool))
        changed = {r: (n, plan.before.get(r, 0)) for r, n in ledger.items() if plan.before.get(r, 0) != n}
        if changed:
            return MoveReport(**report, op_id="", state="NOT_STARTED",
                              note="the pool changed since this pass read it: " + ", ".join(
                                  f"{r} {a} -> {b}" for r, (a, b) in changed.items()) + "; the next pass decides again")
        op = executor.start(plan, gate=dict(gate or {}), scheduled=True, **extra)
    except GpufleetError as err:
        return MoveReport(**report, op_id="", state="NOT_STARTED", note=err.message)
    return _step(executor, op, plan)

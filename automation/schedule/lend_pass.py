"""The reconcile pass carries out lending orders (``lend.py``'s moves with a ``lent`` side).

Per lending pool (a schedule with ``lend`` and a training group with ``lentReservationId``), each
pass, only while no move of the pool is in flight:

- **the allocation** (the platform account, ``lending.lend_step``) is brought toward the slots the
  decision lends, never below what the lent group still runs: a reclaim is only sent once the lent
  nodes are checkpointed, drained and terminated, so EC2's 2-minute warning finds no running lent
  node. The step runs under the pool's lease (kind ``lend``) and is journaled (an intent before
  the call, its result after), like the engine's external calls;
- **the lent group** is driven by the engine, journaled under the same lease in step mode:
  ``released -> lent`` grows it into lent slots the allocation already holds (gated and joined
  like any move's nodes); ``lent -> released`` checkpoints, drains and terminates its nodes with
  its desired size lowered (the reclaim follows on the next pass); ``inference -> lent`` gives
  inference's idle nodes back to the reservation first (the next passes lend the slots).

Slots the allocation holds beyond the lent group's nodes (lent but unused, or being reclaimed
while EC2's warning runs) are not free: a move from ``released`` to another side waits for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.auto_scaling import GroupObs
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup
from gpufleet.automation.lease import Leases, owner_gone
from gpufleet.automation.rebalance import asg
from gpufleet.automation.rebalance.engine import Executor
from gpufleet.automation.rebalance.journal import Journal, Operation, new_op_id
from gpufleet.automation.rebalance.plan import MovePlan, MoveRequest
from gpufleet.automation.rebalance.reservation import RESERVATION, plan_reservation_move
from gpufleet.automation.schedule.lending import Allocation, read_allocation
from gpufleet.automation.schedule.lending import lend_step as platform_step
from gpufleet.automation.schedule.model import Move, PoolTarget, Side
from gpufleet.infra.errors import ConflictError, GpufleetError
from gpufleet.infra.model import PoolSchedule

LENT = Side.LENT.value
"""The plan's side for the lent group (``rebalance ls`` shows ``lent -> released``)."""
LEND_LEASE_S = 60.0
"""The lease one lending step holds: one read and at most two EC2 calls."""


@dataclass(frozen=True)
class LendStep:
    """One journaled lending step under the pool's ``lend`` lease (the pass's and ``lend-init``'s):
    an intent before the EC2 calls, fenced by the lease, and the result after."""

    op_id: str
    journal: Journal
    leases: Leases
    held: Any
    """The lease as acquired (its token fences the calls)."""

    @classmethod
    def acquire(cls, journal: Journal, pool: str) -> LendStep:
        """Raises ConflictError while another holds the pool."""
        leases, op_id = Leases(journal), "ln-" + new_op_id()[3:]
        return cls(op_id, journal, leases, leases.acquire(pool, op_id, LEND_LEASE_S, kind="lend"))

    def intent(self, body: Mapping[str, Any]) -> None:
        self.journal.note(self.op_id, "intent", "lend", {**body, "token": self.held.token})
        self.leases.fence(self.held, LEND_LEASE_S)

    def result(self, body: Mapping[str, Any]) -> None:
        self.journal.note(self.op_id, "result", "lend", dict(body))

    def release(self) -> None:
        with contextlib.suppress(GpufleetError):
            self.leases.release(self.held)


@dataclass(frozen=True, kw_only=True)
class LendingPool:
    """A pool whose schedule lends, with its lent group."""

    pool: str
    """Pool name."""
    source_id: str
    """The pool's ODCR, lent from."""
    group: StackNodeGroup
    """Training's group in the lent slots."""


class Lending:
    """What one pass does for its lending pools."""

    def __init__(self, inventory: FleetInventory, schedules: Sequence[PoolSchedule], executor_for: Callable[[], Executor],
                 desired: Mapping[str, int], targets: Iterable[PoolTarget]) -> None:
        self.inventory = inventory
        self.executor_for = executor_for
        self.desired = desired
        self.targets = {t.pool: t for t in targets}
        self.pools: dict[str, LendingPool] = {}
        for schedule in schedules:
            lent = [g for g in inventory.groups_of("training", schedule.pool) if g.group.lent_reservation_id]
            if schedule.lend is not None and lent:
                self.pools[schedule.pool] = LendingPool(pool=schedule.pool, group=lent[0],
                                                        source_id=inventory.pool(schedule.pool).reservation_id)
        self.allocations: dict[str, Allocation] = {}

    def _lent_nodes(self, pool: LendingPool) -> int:
        return self.desired.get(pool.group.group.asg_name, 0)

    def _ec2(self) -> Any:
        return self.executor_for().clients(self.inventory.platform_stack, "ec2")

    # -- the platform's allocation ---------------------------------------------------------------
    def settle(self, busy: set[str]) -> list[str]:
        """One lending step per idle lending pool; the findings say what waits."""
        findings: list[str] = []
        for name, pool in self.pools.items():
            try:
                allocation = read_allocation(self._ec2(), pool.source_id)
            except GpufleetError as err:
                findings.append(f"pool {name}: the lent slots could not be read: {err.message}")
                continue
            self.allocations[name] = allocation
            if allocation.lent_id and allocation.lent_id != pool.group.group.lent_reservation_id:
                findings.append(f"pool {name}: {pool.group.stack}/{pool.group.group.name} targets "
                                f"{pool.group.group.lent_reservation_id}, the allocation is {allocation.lent_id}: "
                                "nothing lent or reclaimed")
                self.pools = {k: v for k, v in self.pools.items() if k != name}
                continue
            if name in busy:
                continue
            target = self.targets.get(name)
            lend = target.lent if target else 0
            dead = self._left_by_dead_pass(name)
            if allocation.status == "updating" and not dead:
                findings.append(f"pool {name}: EC2 is reclaiming lent slots (its warning runs on drained nodes)")
                continue
            if allocation.lent == max(lend, self._lent_nodes(pool)) and not dead:
                continue
            findings.extend(self._step(pool, lend))
        return findings

    def after(self, started: Iterable[Any]) -> list[str]:
        """The reclaim in the same pass as the give-back of the lent nodes that finished in it
        (``started``: the pass's move reports), not a pass later: the reclaim's lead has no minute to spare."""
        findings: list[str] = []
        for report in started:
            pool = self.pools.get(report.pool)
            if pool is not None and report.from_role == LENT and report.state == "DONE":
                target = self.targets.get(report.pool)
                findings.extend(self._step(pool, target.lent if target else 0))
        return findings

    def _left_by_dead_pass(self, name: str) -> bool:
        """A lending step's lease whose process is gone: the step is redone (it reads EC2 first),
        which frees the pool now instead of when the lease expires."""
        executor = self.executor_for()
        holder = executor.leases.holder(name)
        return (holder is not None and holder.kind == "lend" and holder.expires_at > executor.journal.clock()
                and owner_gone(holder.owner))

    def _step(self, pool: LendingPool, lend: int) -> list[str]:
        """One journaled ``lend_step`` toward ``lend`` slots, under the pool's lease."""
        executor = self.executor_for()
        try:
            lease = LendStep.acquire(executor.journal, pool.pool)
        except ConflictError as err:
            return [f"pool {pool.pool}: lending waits: {err.message}"]
        op_id = lease.op_id
        try:
            # read again under the lease: the pass's snapshot may predate another pass's move
            where = f"{pool.group.stack}/{pool.group.group.asg_name}"
            running = asg.observe(executor.clients(pool.group.stack, "autoscaling"), pool.group.group.asg_name,
                                  where).desired
            want = max(lend, running)  # never reclaim a slot a lent node may still run in
            lease.intent({"call": "lend_step", "pool": pool.pool, "source": pool.source_id, "want": want,
                          "training": running})
            step = platform_step(self._ec2(), pool.source_id, want, training=running)
            lease.result({"call": "lend_step", "pool": pool.pool, "action": step.action, "before": step.before,
                          "after": step.after, "lent_id": step.lent_id, "note": step.note})
            self.allocations[pool.pool] = read_allocation(self._ec2(), pool.source_id)
        except GpufleetError as err:
            return [f"pool {pool.pool}: lending step {op_id} failed: {err.message}"]
        finally:
            lease.release()
        note = f": {step.note}" if step.note else ""
        return [f"pool {pool.pool}: lent slots {step.action} {step.before} -> {step.after} ({op_id}){note}"]

    # -- the lent group, through the engine -------------------------------------------------------
    def carries(self, order: Move) -> bool:
        """The order is this module's: a lending pool's order with a lent side, or from the
        reservation while lent slots are not free yet."""
        if order.pool not in self.pools:
            return Side.LENT in (order.source, order.dest)
        return Side.LENT in (order.source, order.dest) or (order.source is Side.RELEASED and self._held_back(order.pool) > 0)

    def _held_back(self, name: str) -> int:
        allocation = self.allocations.get(name)
        if allocation is None:
            return 0
        updating = allocation.status == "updating"
        return max(0, allocation.lent - self._lent_nodes(self.pools[name])) or int(updating)

    def start(self, order: Move, gate: Mapping[str, Any] | None,
              busy: set[str]) -> tuple[Executor, Operation, MovePlan] | str:
        """Start the engine move that carries the order (the caller steps it), or say why not."""
        what = f"pool {order.pool}: {order.nodes} node(s) {order.source} -> {order.dest}"
        pool = self.pools.get(order.pool)
        if pool is None:
            return f"{what}: the pool has no lent group (a training group with lentReservationId): not lent"
        if order.pool in busy:
            return f"{what} wait for the move in flight (one move a pool at a time)"
        if Side.LENT not in (order.source, order.dest):
            return f"{what} wait: {self._held_back(order.pool)} slot(s) are lent or being reclaimed"
        executor = self.executor_for()
        holder = executor.leases.holder(order.pool)
        if holder is not None and holder.expires_at > executor.journal.clock():
            return f"{what}: pool leased by {holder.kind} {holder.op_id}"
        try:
            plan = self._plan(executor, pool, order)
            if isinstance(plan, str):
                return f"{what}: {plan}"
            op = executor.start(plan, gate=dict(gate or {}), scheduled=True, lending=True)
        except GpufleetError as err:
            return f"{what}: not started: {err.message}"
        busy.add(order.pool)
        return executor, op, plan

    def _plan(self, executor: Executor, pool: LendingPool, order: Move) -> MovePlan | str:
        n, group = order.nodes, pool.group

        def observe(stack: str, name: str) -> GroupObs:
            return asg.observe(executor.clients(stack, "autoscaling"), name, f"{stack}/{name}")

        def work(g: StackNodeGroup, ids: Sequence[str]) -> Any:
            return executor.orchestrators(g.orchestrator, g.stack).work(ids)

        if order.source is Side.LENT:  # reclaim: checkpoint, drain and terminate the lent nodes first
            return plan_reservation_move(self.inventory, MoveRequest(from_role=LENT, to_role=RESERVATION, nodes=n,
                                                                     pool=pool.pool), observe, work, group=group)
        if order.source is Side.INFERENCE:  # inference's idle nodes go back first; the slots are lent after
            return executor.plan(MoveRequest(from_role="inference", to_role=RESERVATION, nodes=n, pool=pool.pool))
        allocation = self.allocations.get(pool.pool)
        room = (allocation.lent - self._lent_nodes(pool)) if allocation and allocation.status == "active" else 0
        if room < n:
            return f"waits for lent slots ({room} lent and unused)"
        return plan_reservation_move(self.inventory, MoveRequest(from_role=RESERVATION, to_role=LENT, nodes=n,
                                                                 pool=pool.pool), observe, work, group=group)

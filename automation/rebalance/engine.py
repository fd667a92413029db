"""The rebalance executor: drives one operation through the state machine, journaled.

Each step observes the real state first, records its intent in the journal, makes the external
call(s), records the result, then moves the operation on with a compare-and-set transition. A step
finding its work already done does nothing, so a resumed run (``resume``) simply starts again at
the operation's state. Any step failure (timeout, insufficient capacity, a failed health gate, an
AWS error after retries) rolls back: the destination gives the capacity back, the source takes it
again, the victims are undrained. A failure during rollback leaves the operation in ROLLING_BACK,
to be resumed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpufleet.automation.auto_scaling import GroupObs
from gpufleet.automation.heal.grace import grace_s
from gpufleet.automation.health.gate import HealthGate
from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.lease import Held, LeaseKeeper, Leases
from gpufleet.automation.orchestrators.base import Orchestrator
from gpufleet.automation.rebalance import asg
from gpufleet.automation.rebalance.journal import Journal, Operation, new_op_id
from gpufleet.automation.rebalance.plan import MovePlan, MoveRequest, make_plan, resolve
from gpufleet.automation.rebalance.preempt import PREEMPT_REASON, PREEMPTS, cancellable
from gpufleet.automation.rebalance.reservation import (
    gives_back,
    involves_reservation,
    plan_reservation_move,
    takes_free,
)
from gpufleet.automation.rebalance.state import TERMINAL, MoveState, progressed_past
from gpufleet.infra.errors import AwsError, ConflictError, GpufleetError, OperationFailed

ClientFactory = Callable[[str, str], Any]
"""(stack name, service name) -> boto3 client in that stack's account."""
OrchestratorFactory = Callable[[str, str], Orchestrator]
"""(orchestrator kind, stack name) -> adapter."""


class StepFailed(GpufleetError):
    """A step could not complete (timeout, capacity, health): the operation rolls back."""

    code = 5


class NotYet(Exception):  # noqa: N818 - control flow, not an error: never a GpufleetError
    """Step mode: a wait that is not over yet; the pass records it and returns."""

    def __init__(self, key: str, what: str, since: float) -> None:
        super().__init__(what)
        self.key = key
        self.what = what
        self.since = since


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on every wait; each wait polls with backoff from ``poll_s`` to ``max_poll_s``."""

    lease_s: float = 120.0
    """Lease of the lock; a heartbeat thread renews it every third of it while the run lasts."""
    checkpoint_grace_s: float | None = None
    """How long work may take to checkpoint and leave on its own before it is requeued/evicted;
    None: from the jobs' published checkpoint time (automation/heal/grace.py, as the healer)."""
    drain_timeout_s: float = 600.0
    acquire_timeout_s: float = 900.0
    """For new instances to be InService (either side, rollback included)."""
    join_timeout_s: float = 600.0
    poll_s: float = 0.5
    max_poll_s: float = 10.0
    pass_s: float = 45.0
    """Step mode: a pass starts no step after this long (a pass a minute never overlaps the next)."""
    park_s: float = 600.0
    """Step mode: how long a parked lease keeps every other operation off the pool between passes."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """How far a step that polls has come."""

    what: str
    """What it waits for (``2 new InService instance(s) in inference/...``)."""
    elapsed_s: float
    timeout_s: float
    done: int | None = None
    """How many of ``total`` are there (None when the step cannot count)."""
    total: int | None = None
    brief: str = ""
    """What is counted, in a few words and without long identifiers (``InService in inference``):
    the terminal's line; ``what`` has the whole detail."""


@dataclass(frozen=True, kw_only=True)
class Progress:
    """One line of progress for the CLI."""

    op_id: str
    state: str
    message: str
    """The whole detail (group names, instance ids, the gate's notes), as --json prints it."""
    pool: str = ""
    """The pool the move is in."""
    brief: str = ""
    """The message in a few words, without long identifiers, for the terminal's line (empty: the
    message is short already)."""
    at: str = field(default_factory=_now_iso)
    """When (ISO 8601, UTC)."""
    waiting: Waiting | None = None
    """Set on the periodic events of a step that polls (drain, acquire, join); None on a transition."""


class Executor:
    def __init__(self, inventory: FleetInventory, clients: ClientFactory, journal: Journal,
                 orchestrators: OrchestratorFactory, gate: HealthGate, *, limits: Limits | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.inventory = inventory
        self.clients = clients
        self.journal = journal
        self.orchestrators = orchestrators
        self.gate = gate
        self.limits = limits or Limits()
        self.on_progress = on_progress or (lambda p: None)
        self.sleep = sleep
        self.clock = clock
        self.leases = Leases(journal)
        self._held: Held | None = None
        """The pool lease this run holds (its fencing token)."""
        self._lease: LeaseKeeper | None = None
        self._stepping = False
        """Step mode: waits do not block (``_wait`` raises Waiting), timeouts run on the journal's clock."""

    # -- planning --------------------------------------------------------------------------------
    def plan(self, request: MoveRequest) -> MovePlan:
        """Observe the pool's groups and the source's work, and plan the move (no writes)."""
        if involves_reservation(request):
            return plan_reservation_move(self.inventory, request, self._observe,
                                         lambda g, ids: self.orchestrators(g.orchestrator, g.stack).work(ids))
        binding = resolve(self.inventory, request)
        observed = {g.group.asg_name: self._observe(g.stack, g.group.asg_name) for g in binding.groups}
        source_orch = self.orchestrators(binding.source.orchestrator, binding.source.stack)
        work = source_orch.work(observed[binding.source.group.asg_name].in_service)
        return make_plan(binding, request, observed, work)

    def start(self, plan: MovePlan, op_id: str | None = None, **extra: Any) -> Operation:
        """Journal the plan as a new PLANNED operation; ``extra`` is kept in its body (e.g. the gate)."""
        return self.journal.create(op_id or new_op_id(), {**extra, "plan": plan.to_dict(), "progress": {}})

    # -- driving ---------------------------------------------------------------------------------
    def run(self, op: Operation) -> Operation:
        """Drive the operation to DONE or ROLLED_BACK; raise OperationFailed when rolled back."""
        plan = self._plan_of(op)
        if op.state in TERMINAL:
            self._let_go(op)
            return op
        if op.state is not MoveState.PLANNED:
            # ours again after a crash (our lease, or its owner gone), or refused while the owner lives
            self._held = self.leases.acquire(plan.pool, op.op_id, self.limits.lease_s)
        steps = self._forward_steps()
        with LeaseKeeper(self.leases, lambda: self._held, self.limits.lease_s) as self._lease:
            while op.state in steps:
                try:
                    op = steps[op.state](op)
                except ConflictError:
                    raise  # someone else owns the operation or the lock: touch nothing
                except (StepFailed, AwsError, GpufleetError) as err:
                    # The step may have written the op (progress) before failing: roll back from the journal's copy.
                    op = self._begin_rollback(self.journal.load(op.op_id) or op, err)
                    break
            if op.state is MoveState.ROLLING_BACK:
                op = self._rollback(op)
        if op.state is MoveState.ROLLED_BACK:
            reason = op.body.get("progress", {}).get("rollback_reason", "")
            raise OperationFailed(f"rebalance {op.op_id} was rolled back: {reason}",
                                  "the fleet is as it was before the move; see `gpufleet status`")
        return op

    def step(self, op: Operation) -> Operation:
        """One pass of step mode: advance the operation as far as it goes without waiting, journal
        what it waits for (a ``wait`` event), park the pool's lease and return; the next pass
        continues. A wait's start is journaled, so its timeout spans passes. Never raises for a
        rollback: the returned operation is ROLLED_BACK (or ROLLING_BACK, to be continued)."""
        plan = self._plan_of(op)
        if op.state in TERMINAL:
            self._let_go(op)
            return op
        if op.state is not MoveState.PLANNED:
            self._held = self.leases.acquire(plan.pool, op.op_id, self.limits.lease_s)
        self._stepping = True
        ends = self.clock() + self.limits.pass_s
        try:
            with LeaseKeeper(self.leases, lambda: self._held, self.limits.lease_s) as self._lease:
                op = self._advance(op, ends)
        except ConflictError:
            raise
        except GpufleetError:
            self._park()  # a rollback that could not finish: the next pass retries it
            raise
        finally:
            self._stepping = False
        if op.state not in TERMINAL:
            self._park()
        return op

    def _park(self) -> None:
        if self._held is not None:
            self.leases.park(self._held, self.limits.park_s)
            self._held = None

    def _advance(self, op: Operation, ends: float) -> Operation:
        """Steps of the forward path (or the rollback) until terminal, a wait, or the pass's time is up."""
        for _ in range(len(MoveState) + 1):
            if op.state in TERMINAL:
                return op
            if self.clock() >= ends:
                self.journal.record(op, "wait", str(op.state), {"for": "the next pass (this one's time is up)"})
                return op
            try:
                if op.state is MoveState.ROLLING_BACK:
                    return self._rollback(op)
                op = self._forward_steps()[op.state](op)
            except NotYet as waiting:
                return self._waiting(op, waiting)
            except ConflictError:
                raise  # someone else owns the operation or the lock: touch nothing
            except (StepFailed, AwsError, GpufleetError) as err:
                op = self._begin_rollback(self.journal.load(op.op_id) or op, err)
        return op

    def _waiting(self, op: Operation, waiting: NotYet) -> Operation:
        """Journal the wait (and, the first time, when it started), from the journal's copy of the op."""
        current = self.journal.load(op.op_id) or op
        waits = dict(self._progress(current).get("waits", {}))
        detail = {"for": waiting.what, "since": waiting.since}
        if waiting.key in waits:
            return self.journal.record(current, "wait", str(current.state), detail)
        waits[waiting.key] = waiting.since
        return self.journal.record(current, "wait", str(current.state), detail,
                                   body=self._with_progress(current, waits=waits))

    def _forward_steps(self) -> dict[MoveState, Callable[[Operation], Operation]]:
        return {
            MoveState.PLANNED: self._lock, MoveState.LOCKED: self._checkpoint,
            MoveState.CHECKPOINTING: self._drain, MoveState.DRAINED: self._release,
            MoveState.RELEASED: self._acquire, MoveState.ACQUIRED: self._health,
            MoveState.HEALTHY: self._join, MoveState.JOINED: self._done,
        }

    def resume(self, op_id: str) -> Operation:
        return self.run(self._load(op_id))

    def cancel(self, op_id: str) -> Operation:
        """Roll back an unfinished operation: only once its owner's lease expired (or the owner is gone)."""
        op = self._load(op_id)
        if op.state in TERMINAL:
            raise ConflictError(f"rebalance {op_id} is already {op.state}", "nothing to cancel")
        self._held = self.leases.acquire(self._plan_of(op).pool, op.op_id, self.limits.lease_s)
        if op.state is not MoveState.ROLLING_BACK:
            op = self._begin_rollback(op, OperationFailed("cancelled by the operator"))
        return self.run(op)

    def cancel_for(self, op: Operation, by: str, reason: str) -> Operation:
        """Step mode: cancel ``op`` for the operation ``by`` (a deadline give-back), under ``op``'s own
        lease: ConflictError while another process holds it. Only a move that has terminated no
        victim is cancelled (``preempt.cancellable``); any other is returned untouched. A rollback
        that cannot finish in this pass is left ROLLING_BACK, its lease parked, for the next."""
        plan = self._plan_of(op)
        self._held = self.leases.acquire(plan.pool, op.op_id, self.limits.lease_s)
        self._stepping = True
        try:
            with LeaseKeeper(self.leases, lambda: self._held, self.limits.lease_s) as self._lease:
                op = self.journal.load(op.op_id) or op
                if op.state is not MoveState.ROLLING_BACK and op.state not in TERMINAL:
                    if not cancellable(self.journal, op):
                        self._park()
                        return op
                    op = self._begin_rollback(op, OperationFailed(f"cancelled: pre-empted by {by}: {reason}"),
                                              cancelled_by=by)
                if op.state is MoveState.ROLLING_BACK:
                    try:
                        op = self._rollback(op)
                    except NotYet as waiting:
                        op = self._waiting(op, waiting)
        finally:
            self._stepping = False
        if op.state not in TERMINAL:
            self._park()
        return op

    def _stop_preempted(self, op: Operation) -> None:
        """A give-back that pre-empts (``preempt.PREEMPTS``): the move it names is cancelled, or has
        ended, before the give-back takes the pool's lease; until then it waits (NotYet in step mode)."""
        target = str(op.body[PREEMPTS])
        reason = str(op.body.get(PREEMPT_REASON, "a deadline"))

        def stopped() -> bool:
            other = self.journal.load(target)
            if other is None or other.state in TERMINAL:
                return True
            if other.state is not MoveState.ROLLING_BACK and not cancellable(self.journal, other):
                return False  # past its release: it finishes, the give-back follows
            sibling = Executor(self.inventory, self.clients, self.journal, self.orchestrators, self.gate,
                               limits=self.limits, on_progress=self.on_progress, sleep=self.sleep, clock=self.clock)
            try:
                other = sibling.cancel_for(other, op.op_id, reason)
            except ConflictError:
                return False  # its pass is acting right now: look again
            return other.state in TERMINAL

        self._wait(op, f"{target} to stop (pre-empted)", self.limits.drain_timeout_s, stopped,
                   brief=f"{target} to stop")

    def _load(self, op_id: str) -> Operation:
        op = self.journal.load(op_id)
        if op is None:
            from gpufleet.infra.errors import BadInputError

            raise BadInputError(f"--resume {op_id!r}: no such rebalance in journal table {self.journal.table}")
        return op

    # -- helpers ---------------------------------------------------------------------------------
    def _plan_of(self, op: Operation) -> MovePlan:
        return MovePlan.from_dict(op.body["plan"])

    def _progress(self, op: Operation) -> dict[str, Any]:
        return dict(op.body.get("progress", {}))

    def _with_progress(self, op: Operation, **changes: Any) -> dict[str, Any]:
        return {**op.body, "progress": {**self._progress(op), **changes}}

    def _say(self, op: Operation, message: str, state: MoveState | None = None, brief: str = "") -> None:
        self.on_progress(Progress(op_id=op.op_id, state=str(state or op.state), message=message,
                                  pool=str(op.body.get("plan", {}).get("pool", "")), brief=brief))

    def _asg(self, stack: str) -> Any:
        return self.clients(stack, "autoscaling")

    def _observe(self, stack: str, name: str) -> GroupObs:
        return asg.observe(self._asg(stack), name, f"{stack}/{name}")

    def _external(self, op: Operation, step: str, call: str, detail: dict[str, Any], fn: Callable[[], Any]) -> Any:
        """Record the intent, check our fencing token (a conditional write), make the call, record the result."""
        self.journal.record(op, "intent", step, {"call": call, **detail})
        self._fence()
        result = fn()
        self.journal.record(op, "result", step, {"call": call, **detail, "result": result if isinstance(result, dict | list | str | int | None) else str(result)})
        return result

    def _fence(self) -> None:
        """ConflictError unless the pool's lease still carries our token (it also extends the lease)."""
        if self._held is not None:
            self.leases.fence(self._held, self.limits.lease_s)

    def _heartbeat(self, op: Operation) -> None:
        """Stop if the lease keeper lost the lease to another process."""
        if self._lease is not None:
            self._lease.check()

    def _let_go(self, op: Operation) -> None:
        """Release the pool's lease after the operation ended; a failure only leaves it to expire.

        The operation is already DONE or ROLLED_BACK: a failed release must never roll it back.
        """
        try:
            self.leases.release_op(self._plan_of(op).pool, op.op_id)
        except GpufleetError as err:
            self._say(op, f"the lease was not released ({err.message}); it expires within {self.limits.lease_s:.0f} s")
        self._held = None

    def _stale(self, plan: MovePlan) -> str | None:
        """Why the plan no longer matches the live fleet (observed after the lease is ours), or None."""
        none = GroupObs(asg_name="", desired=0, min_size=0, max_size=0)  # the reservation side
        source = none if takes_free(plan) else self._observe(plan.source_stack, plan.source_asg)
        dest = none if gives_back(plan) else self._observe(plan.dest_stack, plan.dest_asg)
        if source.desired != plan.source_desired_before:
            return f"{plan.source_stack}/{plan.source_asg} desired is {source.desired}, planned on {plan.source_desired_before}"
        if dest.desired != plan.dest_desired_before:
            return f"{plan.dest_stack}/{plan.dest_asg} desired is {dest.desired}, planned on {plan.dest_desired_before}"
        if set(dest.live) != set(plan.dest_instances_before):
            return f"{plan.dest_stack}/{plan.dest_asg} instances changed since the plan"
        gone = [v.instance_id for v in plan.victims if v.instance_id not in set(source.in_service)]
        if gone:
            return f"victim(s) {', '.join(gone)} no longer in service in {plan.source_stack}/{plan.source_asg}"
        return None

    def _wait(self, op: Operation, what: str, timeout_s: float, done: Callable[[], bool],
              count: Callable[[], tuple[int, int]] | None = None, brief: str = "") -> None:
        """Poll ``done`` with backoff, renewing the lease, until true or StepFailed at the timeout;
        each poll reports how far it has come (``count``: how many of how many are there).

        Step mode: look once; not done yet -> NotYet, timed from the wait's journaled start."""
        if self._stepping:
            key = f"{op.state}|{what}"
            if done():
                return
            since = float(self._progress(op).get("waits", {}).get(key, self.journal.clock()))
            if self.journal.clock() - since >= timeout_s:
                raise StepFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
            raise NotYet(key, what, since)
        start = self.clock()
        deadline = start + timeout_s
        delay = self.limits.poll_s
        for _ in range(100_000):
            if done():
                return
            if self.clock() >= deadline:
                raise StepFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
            got, total = count() if count else (None, None)
            self.on_progress(Progress(op_id=op.op_id, state=str(op.state), message=f"waiting for {what}",
                                      pool=str(op.body.get("plan", {}).get("pool", "")),
                                      waiting=Waiting(what=what, elapsed_s=round(self.clock() - start, 1),
                                                      timeout_s=timeout_s, done=got, total=total, brief=brief)))
            self._heartbeat(op)
            self.sleep(min(delay, max(0.0, deadline - self.clock())))
            delay = min(delay * 1.5, self.limits.max_poll_s)
        raise StepFailed(f"gave up waiting for {what}")

    def _to(self, op: Operation, state: MoveState, message: str, *, locked: bool = True, brief: str = "",
            **detail: Any) -> Operation:
        if locked and state is not MoveState.LOCKED:
            self._heartbeat(op)
        op = self.journal.transition(op, state, detail)
        self._say(op, message, brief=brief)
        return op

    # -- forward steps ---------------------------------------------------------------------------
    def _lock(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        if op.body.get(PREEMPTS):
            self._stop_preempted(op)
        try:
            self._held = self.leases.acquire(plan.pool, op.op_id, self.limits.lease_s)
            stale = self._stale(plan)
        except ConflictError as refused:
            self._refuse(op, refused.message, "refused by the lease")
            raise
        if stale:
            self._refuse(op, f"the plan went stale: {stale}", "stale plan")
            self._let_go(op)
            raise ConflictError(f"rebalance {op.op_id} refused: the plan went stale: {stale}",
                                "nothing was changed; plan the move again")
        return self._to(op, MoveState.LOCKED, f"pool {plan.pool} leased by {self.journal.owner} "
                        f"(token {self._held.token})", brief=f"leased (token {self._held.token})",
                        token=self._held.token)

    def _refuse(self, op: Operation, reason: str, short: str) -> None:
        """PLANNED -> ROLLING_BACK -> ROLLED_BACK, nothing done."""
        op = self.journal.transition(op, MoveState.ROLLING_BACK, {"reason": reason},
                                     body=self._with_progress(op, rollback_reason=f"refused: {reason}",
                                                              reached=str(MoveState.PLANNED)))
        self.journal.transition(op, MoveState.ROLLED_BACK, {"reason": short})

    def _checkpoint(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        if takes_free(plan):
            return self._to(op, MoveState.CHECKPOINTING, "nothing to checkpoint: the nodes come from the pool's free slots")
        victims = [v.instance_id for v in plan.victims]
        orch = self.orchestrators(plan.source_orchestrator, plan.source_stack)
        self._external(op, "checkpoint", "request_checkpoint", {"orchestrator": orch.kind, "nodes": victims},
                       lambda: orch.request_checkpoint(victims, f"gpufleet rebalance {op.op_id}"))
        op = self._signalled(op, orch.jobs(victims))
        return self._to(op, MoveState.CHECKPOINTING, f"asked {len(victims)} node(s) to checkpoint ({orch.kind})",
                        brief=f"asked {len(victims)} to checkpoint ({orch.kind})")

    def _drain(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        if takes_free(plan):
            return self._to(op, MoveState.DRAINED, "nothing to drain")
        victims = [v.instance_id for v in plan.victims]
        orch = self.orchestrators(plan.source_orchestrator, plan.source_stack)

        gone: set[str] = set()

        def all_drained() -> bool:
            gone.clear()
            gone.update(orch.drained(victims) & set(victims))
            return gone >= set(victims)

        def drained_count() -> tuple[int, int]:
            return len(gone), len(victims)

        progress = self._progress(op)
        grace = float(progress.get("grace_s", grace_s([], self.limits.checkpoint_grace_s)))
        until = float(progress.get("signalled_at", self.journal.clock())) + grace
        with contextlib.suppress(StepFailed):
            # Over at the journaled end of the grace (a resumed or stepped drain waits out only the rest).
            self._wait(op, "work to checkpoint and leave", grace,
                       lambda: all_drained() or self.journal.clock() >= until, drained_count,
                       brief="left after a checkpoint")
        if not all_drained():
            op = self._grace_over(op, orch, victims)

            def evicted() -> bool:
                self._external(op, "drain", "evict", {"orchestrator": orch.kind, "nodes": victims},
                               lambda: orch.evict(victims))
                return all_drained()

            self._wait(op, f"{len(victims)} node(s) to drain", self.limits.drain_timeout_s, evicted, drained_count,
                       brief="drained")
        signalled = self._progress(op).get("signalled", [])
        left = self._progress(op).get("grace_over") or {"left_on_their_own": signalled, "requeued": []}
        return self._to(op, MoveState.DRAINED, f"{len(victims)} node(s) drained", **left)

    def _signalled(self, op: Operation, jobs: list[Any]) -> Operation:
        """Journal the jobs told to checkpoint and their grace (automation/heal/grace.py), once."""
        if "signalled_at" in self._progress(op):
            return op
        grace = grace_s(jobs, self.limits.checkpoint_grace_s)
        ids = [j.job_id for j in jobs]
        return self.journal.record(op, "result", "grace", {"signalled": ids, "grace_s": grace},
                                   body=self._with_progress(op, signalled=ids, signalled_at=self.journal.clock(),
                                                            grace_s=grace))

    def _grace_over(self, op: Operation, orch: Orchestrator, victims: list[str]) -> Operation:
        """The grace is over: journal (once) which signalled jobs left on their own and which the
        eviction now moves off."""
        progress = self._progress(op)
        if "grace_over" in progress:
            return op
        staying = {j.job_id for j in orch.jobs(victims)}
        signalled = [str(j) for j in progress.get("signalled", [])]
        over = {"left_on_their_own": [j for j in signalled if j not in staying], "requeued": sorted(staying)}
        return self.journal.record(op, "result", "grace_over", over,
                                   body=self._with_progress(op, grace_over=over))

    def _release(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        if takes_free(plan):
            return self._to(op, MoveState.RELEASED, f"{plan.nodes} free slot(s) of pool {plan.pool} to take", released=[])
        client = self._asg(plan.source_stack)
        where = f"{plan.source_stack}/{plan.source_asg}"
        live = set(self._observe(plan.source_stack, plan.source_asg).live)
        for victim in plan.victims:
            if victim.instance_id in live:
                self._external(op, "release", "TerminateInstanceInAutoScalingGroup",
                               {"asg": plan.source_asg, "instance": victim.instance_id, "decrement": True},
                               lambda iid=victim.instance_id: asg.terminate(client, iid, where))
        target = plan.source_desired_before - plan.nodes
        now = self._observe(plan.source_stack, plan.source_asg)
        if now.desired > target:
            # A victim left the group on its own (no decrement) and the group replaced it. Lowering the
            # desired size would let the ASG pick which node dies, maybe a busy one: give up instead.
            raise StepFailed(f"{where}: desired is {now.desired}, not {target}, after releasing the victims: "
                             "a victim left the group on its own; plan the move again")
        return self._to(op, MoveState.RELEASED, f"released {plan.nodes} node(s) from {where} (desired {target})",
                        brief=f"released {plan.nodes} in {plan.source_stack} (desired {target})",
                        released=[v.instance_id for v in plan.victims])

    def _grow(self, op: Operation, step: str, stack: str, name: str, target: int, before: set[str],
              need: int, known_key: str, refresh: bool = False) -> tuple[Operation, list[str]]:
        """Raise ``name`` to ``target`` desired and wait for ``need`` InService instances not in ``before``.

        Scaling activities present before the raise are recorded first (``known_key``), so only a
        failure of this raise counts as insufficient capacity; ``refresh`` takes a new snapshot.
        """
        client = self._asg(stack)
        where = f"{stack}/{name}"
        progress = self._progress(op)
        if refresh or known_key not in progress:
            known_ids = asg.activity_ids(client, name, where)
            op = self.journal.record(op, "intent", step, {"call": "DescribeScalingActivities", "asg": name},
                                     body=self._with_progress(op, **{known_key: known_ids}))
            progress = self._progress(op)
        known = set(progress[known_key])
        if self._observe(stack, name).desired < target:
            self._external(op, step, "SetDesiredCapacity", {"asg": name, "desired": target},
                           lambda: asg.set_desired(client, name, target, where))
        fresh: list[str] = []

        def arrived() -> bool:
            nonlocal fresh
            fresh = [i for i in self._observe(stack, name).in_service if i not in before]
            if len(fresh) >= need:
                return True
            failures = asg.capacity_failures(client, name, where, known)
            if failures:
                raise StepFailed(f"{where}: insufficient capacity: {failures[0]}")
            return False

        self._wait(op, f"{need} new InService instance(s) in {where}", self.limits.acquire_timeout_s, arrived,
                   lambda: (len(fresh), need), brief=f"InService in {stack}")
        return op, fresh

    def _acquire(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        if gives_back(plan):
            op = self.journal.record(op, "result", "acquire", {"instances": []}, body=self._with_progress(op, acquired=[]))
            return self._to(op, MoveState.ACQUIRED, f"nothing to acquire: {plan.nodes} slot(s) went back to pool {plan.pool}",
                            instances=[])
        target = plan.dest_desired_before + plan.nodes
        op, fresh = self._grow(op, "acquire", plan.dest_stack, plan.dest_asg, target,
                               set(plan.dest_instances_before), plan.nodes, "acquire_activities_before")
        op = self.journal.record(op, "result", "acquire", {"instances": fresh},
                                 body=self._with_progress(op, acquired=fresh))
        return self._to(op, MoveState.ACQUIRED, f"{len(fresh)} new node(s) InService in "
                        f"{plan.dest_stack}/{plan.dest_asg} (desired {target})",
                        brief=f"{len(fresh)} InService in {plan.dest_stack} (desired {target})", instances=fresh)

    def _health(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        fresh = self._progress(op)["acquired"]
        if gives_back(plan):
            return self._to(op, MoveState.HEALTHY, "no new node to gate")
        self._say(op, f"health gate: checking {len(fresh)} new node(s)", brief=f"gate: checking {len(fresh)} new node(s)")
        verdict = self._external(op, "health", "health_gate", {"nodes": fresh},
                                 lambda: _verdict_dict(self.gate.check(plan.dest_stack, fresh)))
        if set(verdict["passed"]) < set(fresh):
            failed = ", ".join(f"{i}: {why}" for i, why in verdict["failed"].items())
            raise StepFailed(f"health gate failed: {failed or 'not every node passed'}")
        note = f" ({verdict['summary']})" if verdict["summary"] else ""
        # The gate's summary joins its notes (a skipped peer all-reduce per node) with "; ".
        passed = f"{len(verdict['passed'])}/{len(fresh)} passed"
        return self._to(op, MoveState.HEALTHY, f"{len(fresh)} node(s) passed the health gate{note}",
                        brief=f"{passed}, notes: rebalance show" if "; " in verdict["summary"] else f"{passed} the gate")

    def _join(self, op: Operation) -> Operation:
        plan = self._plan_of(op)
        fresh = self._progress(op)["acquired"]
        if gives_back(plan):
            return self._to(op, MoveState.JOINED, "no new node to join")
        orch = self.orchestrators(plan.dest_orchestrator, plan.dest_stack)

        ready: set[str] = set()

        def joined() -> bool:
            self._fence()  # admit writes to the orchestrator: only while the lease is ours
            orch.admit(fresh)  # lift the hold new nodes registered with, as each registers
            ready.clear()
            ready.update(orch.ready(fresh) & set(fresh))
            return ready >= set(fresh)

        self._wait(op, f"{len(fresh)} node(s) to join {orch.kind}", self.limits.join_timeout_s, joined,
                   lambda: (len(ready), len(fresh)), brief=f"joined {orch.kind}")
        return self._to(op, MoveState.JOINED, f"{len(fresh)} node(s) ready in {plan.dest_stack} ({orch.kind})",
                        brief=f"{len(fresh)} ready in {plan.dest_stack} ({orch.kind})")

    def _done(self, op: Operation) -> Operation:
        op = self._to(op, MoveState.DONE, "done; releasing the lease")
        self._let_go(op)
        return op

    # -- rollback --------------------------------------------------------------------------------
    def _begin_rollback(self, op: Operation, err: GpufleetError, **why: str) -> Operation:
        """``why``: kept in the progress and the transition's detail (``cancelled_by`` of a pre-emption)."""
        reached = str(op.state)
        body = self._with_progress(op, rollback_reason=err.message, reached=reached, **why)
        op = self.journal.transition(op, MoveState.ROLLING_BACK, {"reason": err.message, **why}, body=body)
        self._say(op, f"rolling back: {err.message}")
        return op

    def _rollback(self, op: Operation) -> Operation:
        """Give the capacity back to the source. Idempotent: every part observes before acting."""
        plan = self._plan_of(op)
        reached = MoveState(self._progress(op).get("reached", MoveState.PLANNED))
        if reached is MoveState.PLANNED:
            op = self._to(op, MoveState.ROLLED_BACK, "rolled back (nothing had been done)", locked=False)
            self._let_go(op)
            return op
        try:
            if not gives_back(plan):
                op = self._shrink_destination(op, plan)
            if not takes_free(plan):
                op = self._restore_source(op, plan)
            if progressed_past(reached, MoveState.LOCKED) and not takes_free(plan):
                survivors = [v.instance_id for v in plan.victims
                             if v.instance_id in set(self._observe(plan.source_stack, plan.source_asg).live)]
                orch = self.orchestrators(plan.source_orchestrator, plan.source_stack)
                if survivors:
                    self._external(op, "rollback", "undrain", {"orchestrator": orch.kind, "nodes": survivors},
                                   lambda: orch.undrain(survivors))
        except ConflictError:
            raise
        except GpufleetError as err:
            raise OperationFailed(f"rebalance {op.op_id} could not finish rolling back: {err.message}",
                                  f"fix the cause, then: gpufleet rebalance --resume {op.op_id}") from None
        op = self._to(op, MoveState.ROLLED_BACK, "rolled back: the capacity is where it was",
                      brief="the capacity is where it was")
        self._let_go(op)
        return op

    def _shrink_destination(self, op: Operation, plan: MovePlan) -> Operation:
        client = self._asg(plan.dest_stack)
        where = f"{plan.dest_stack}/{plan.dest_asg}"
        now = self._observe(plan.dest_stack, plan.dest_asg)
        if now.desired <= plan.dest_desired_before:
            return op
        before = set(plan.dest_instances_before)
        for iid in [i for i in now.live if i not in before]:
            self._external(op, "rollback", "TerminateInstanceInAutoScalingGroup",
                           {"asg": plan.dest_asg, "instance": iid, "decrement": True},
                           lambda iid=iid: asg.terminate(client, iid, where))
        if self._observe(plan.dest_stack, plan.dest_asg).desired > plan.dest_desired_before:
            self._external(op, "rollback", "SetDesiredCapacity", {"asg": plan.dest_asg, "desired": plan.dest_desired_before},
                           lambda: asg.set_desired(client, plan.dest_asg, plan.dest_desired_before, where))
        self._say(op, f"gave {where} back its {plan.dest_desired_before} node(s)",
                  brief=f"gave {plan.dest_stack} back its {plan.dest_desired_before} node(s)")
        return op

    def _restore_source(self, op: Operation, plan: MovePlan) -> Operation:
        target = plan.source_desired_before
        now = self._observe(plan.source_stack, plan.source_asg)
        if now.desired >= target and len(now.in_service) >= target:
            return op
        # a fresh snapshot of the scaling activities when blocking (a resumed rollback); a stepped one keeps its first
        op, _ = self._grow(op, "rollback", plan.source_stack, plan.source_asg, target, set(), target,
                           "rollback_activities_before", refresh=not self._stepping)
        self._say(op, f"{plan.source_stack}/{plan.source_asg} is back to {target} node(s)",
                  brief=f"{plan.source_stack} is back to {target} node(s)")
        return op


def _verdict_dict(verdict: Any) -> dict[str, Any]:
    return {"passed": list(verdict.passed), "failed": dict(verdict.failed), "summary": verdict.summary,
            "nodes": list(verdict.nodes)}

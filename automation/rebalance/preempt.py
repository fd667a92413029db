"""Pre-emption: a deadline give-back (a Capacity Block's end) stops the move in flight in its pool.

The give-back is journaled first, naming the move it stops (``PREEMPTS`` in its body), so every
later pass knows the pre-emption is under way and who asked; then, at the give-back's first step
and under the stopped move's own lease, the move is cancelled at a safe boundary: one that has not
terminated a victim yet (before RELEASED, and no termination intent journaled) is rolled back,
and its journal says it was cancelled, why, and by which operation (``cancelled_by``). A move past
that point is not touched: it finishes, and the give-back follows it.
"""

from __future__ import annotations

from gpufleet.automation.rebalance.journal import Journal, Operation
from gpufleet.automation.rebalance.state import MoveState

PREEMPTS = "preempts"
"""Body key of a give-back that pre-empts: the id of the move it stops."""
PREEMPT_REASON = "preempt_reason"
"""Body key of that give-back: why it could not wait."""
CANCELLABLE = frozenset({MoveState.PLANNED, MoveState.LOCKED, MoveState.CHECKPOINTING, MoveState.DRAINED})
"""States before any victim is terminated: a cancel leaves every node where it was."""


def cancellable(journal: Journal, op: Operation) -> bool:
    """True while ``op`` has terminated no victim: its state is before RELEASED and its journal holds
    no termination intent (a pass killed inside the release step may have terminated some)."""
    if op.state not in CANCELLABLE:
        return False
    return not any(e.event_type == "intent" and e.detail.get("call") == "TerminateInstanceInAutoScalingGroup"
                   for e in journal.events(op.op_id))


def preempted_by(in_flight: list[Operation]) -> dict[str, str]:
    """The moves in flight that a give-back in flight pre-empts: stopped move id -> give-back id."""
    return {str(op.body[PREEMPTS]): op.op_id for op in in_flight if op.body.get(PREEMPTS)}

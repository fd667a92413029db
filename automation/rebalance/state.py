"""The states of one rebalance, and which transitions are legal.

The forward path, one edge per step the executor takes::

    PLANNED -> LOCKED            the lease lock is held
    LOCKED -> CHECKPOINTING      victims asked to checkpoint; no new work lands on them
    CHECKPOINTING -> DRAINED     victims run no work any more
    DRAINED -> RELEASED          exactly the victims terminated, source desired size decremented
    RELEASED -> ACQUIRED         destination desired size raised, new instances InService
    ACQUIRED -> HEALTHY          the new instances passed the health gate
    HEALTHY -> JOINED            admitted (their registration hold lifted) and reported ready
    JOINED -> DONE               the lock is released

Failure, from any non-terminal state (PLANNED included: a move refused by the lock)::

    <any non-terminal> -> ROLLING_BACK -> ROLLED_BACK

ROLLING_BACK gives the capacity back to the source (destination desired restored, source
re-acquired, victims undrained); it is re-entered on resume until it completes.
"""

from __future__ import annotations

import enum

from gpufleet.infra.errors import ConflictError


class MoveState(enum.StrEnum):
    PLANNED = "PLANNED"
    LOCKED = "LOCKED"
    CHECKPOINTING = "CHECKPOINTING"
    DRAINED = "DRAINED"
    RELEASED = "RELEASED"
    ACQUIRED = "ACQUIRED"
    HEALTHY = "HEALTHY"
    JOINED = "JOINED"
    DONE = "DONE"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"


FORWARD: tuple[MoveState, ...] = (
    MoveState.PLANNED, MoveState.LOCKED, MoveState.CHECKPOINTING, MoveState.DRAINED,
    MoveState.RELEASED, MoveState.ACQUIRED, MoveState.HEALTHY, MoveState.JOINED, MoveState.DONE,
)
TERMINAL = frozenset({MoveState.DONE, MoveState.ROLLED_BACK})


def _edges() -> dict[MoveState, frozenset[MoveState]]:
    edges: dict[MoveState, set[MoveState]] = {s: set() for s in MoveState}
    for here, there in zip(FORWARD, FORWARD[1:], strict=False):
        edges[here].add(there)
    for state in MoveState:
        if state not in TERMINAL and state is not MoveState.ROLLING_BACK:
            edges[state].add(MoveState.ROLLING_BACK)
    edges[MoveState.ROLLING_BACK].add(MoveState.ROLLED_BACK)
    return {s: frozenset(n) for s, n in edges.items()}


EDGES = _edges()


def is_legal(here: MoveState, there: MoveState) -> bool:
    return there in EDGES[here]


def check_transition(here: MoveState, there: MoveState) -> None:
    """Raise ConflictError unless ``here -> there`` is an edge of the machine."""
    if not is_legal(here, there):
        allowed = ", ".join(sorted(EDGES[here])) or "none (terminal)"
        raise ConflictError(f"illegal rebalance transition {here} -> {there}", f"from {here}: {allowed}")


def next_forward(state: MoveState) -> MoveState | None:
    """The next state on the forward path, or None at DONE / off the path."""
    if state not in FORWARD or state is MoveState.DONE:
        return None
    return FORWARD[FORWARD.index(state) + 1]


def progressed_past(state: MoveState, step: MoveState) -> bool:
    """True when a forward ``state`` is at or beyond ``step`` (for deciding what to undo)."""
    return state in FORWARD and FORWARD.index(state) >= FORWARD.index(step)

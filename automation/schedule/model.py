"""What the decision reads and returns: the live fleet of a pool, moves in flight, serving signals,
pool deadlines, and the decision itself. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpufleet.infra.contract import PoolOutput

# EC2 starts terminating a Capacity Block's instances this long before the block ends.
CAPACITY_BLOCK_TERMINATION_LEAD = dt.timedelta(minutes=30)


class Side(enum.StrEnum):
    """Where a pool's node is (or is going)."""

    INFERENCE = "inference"
    TRAINING = "training"
    RELEASED = "released"
    """Back to the pool, used by no consumer (a Capacity Block's end)."""
    LENT = "lent"
    """Training in the pool's lent slots (an interruptible capacity reservation EC2 reclaims)."""


@dataclass(frozen=True, kw_only=True)
class PoolFleet:
    """A pool's nodes as they are now (from the stack-output contract and status)."""

    pool: str
    """Pool name."""
    count: int
    """Nodes the reservation holds now."""
    inference: int
    """Inference nodes serving (joined and gated)."""
    training: int
    """Training nodes running (not being drained); the pool's hot spares are not among them."""
    spares: int = 0
    """Hot spares the pool keeps (launched in its training group, held): neither side's, never moved."""
    lent: int = 0
    """Training nodes running in the pool's lent slots (its interruptible reservation); ``count``
    includes those slots."""

    @property
    def usable(self) -> int:
        """What the two sides split: the count less the spares."""
        return max(0, self.count - self.spares)


@dataclass(frozen=True, kw_only=True)
class Move:
    """Nodes on their way from one side of a pool to the other (a journaled move, or an order)."""

    pool: str
    """Pool name."""
    source: Side
    """Where the nodes were."""
    dest: Side
    """Where they go."""
    nodes: int
    """How many."""


@dataclass(frozen=True, kw_only=True)
class PoolSignals:
    """Recent serving signals of a pool's inference, one sample a minute, oldest first."""

    queue_depth: Sequence[float] = ()
    """``vllm:num_requests_waiting`` per serving node."""
    kv_cache: Sequence[float] = ()
    """``vllm:kv_cache_usage_perc``, 0 to 1."""
    forecast_nodes: float | None = None
    """Inference nodes a forecaster expects to be needed one lead time from now (None: no forecast)."""


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """A pool that exists only for a while: a Capacity Block (PoolOutput.start_time/end_time)."""

    start: dt.datetime
    """When the block starts (aware)."""
    end: dt.datetime
    """When it ends (aware); EC2 terminates its instances from 30 minutes before."""

    @property
    def termination(self) -> dt.datetime:
        return self.end - CAPACITY_BLOCK_TERMINATION_LEAD


def deadlines_of(pools: Iterable[PoolOutput]) -> dict[str, Deadline]:
    """The deadline of every pool that has one (a Capacity Block with its end time in the contract)."""
    out = {}
    for pool in pools:
        if pool.kind == "capacity-block" and pool.end_time:
            end = dt.datetime.fromisoformat(pool.end_time)
            start = dt.datetime.fromisoformat(pool.start_time) if pool.start_time else dt.datetime.min.replace(tzinfo=dt.UTC)
            out[pool.name] = Deadline(start=start if start.tzinfo else start.replace(tzinfo=dt.UTC),
                                      end=end if end.tzinfo else end.replace(tzinfo=dt.UTC))
    return out


@dataclass(frozen=True, kw_only=True)
class PoolTarget:
    """The split the decision wants for one pool now."""

    pool: str
    """Pool name."""
    inference: int
    """Inference nodes wanted (serving, or on their way)."""
    training: int
    """Training nodes wanted."""
    scheduled: int
    """What the windows alone ask for (looking one lead time ahead)."""
    reason: str
    """Why: window, reactive up/down/hold, forecast, deadline, lend."""
    lent: int = 0
    """Slots lent to training (the interruptible allocation's size; ``training`` counts them too)."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What one pass decides: targets per pool, the moves to start, what cannot be served."""

    now: dt.datetime
    """The instant decided for."""
    targets: tuple[PoolTarget, ...]
    """One per scheduled pool."""
    moves: tuple[Move, ...] = ()
    """Moves to start now."""
    findings: tuple[str, ...] = field(default_factory=tuple)
    """Windows that cannot be served with the capacity that will exist, and why."""

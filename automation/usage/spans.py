"""What the usage ledger is computed from: nodes' lives, the moves' phases, the reservations.

Times are seconds since the epoch (UTC), half-open intervals ``[start, end)``. The readers in
``gpufleet.automation.usage.sources`` build these from AWS and the journal; tests and the benchmark
build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSES = ("training", "inference", "moving", "spare", "idle")
"""Workload classes, in report order. Every reserved GPU-second is in exactly one of them."""


@dataclass(frozen=True, kw_only=True)
class NodeSpan:
    """One instance's life in a consumer account: launched at ``start``, gone at ``end``."""

    instance_id: str
    stack: str
    """The consumer stack whose Auto Scaling group held it."""
    account_id: str
    role: str
    """training or inference: the class its time counts as when it is not moving or spare."""
    pool: str
    start: float
    end: float | None = None
    """None while it still runs (counted to the report's end)."""
    spare: bool = False
    """Held as a hot spare: launched and gated, not serving."""


@dataclass(frozen=True, kw_only=True)
class MovePhase:
    """Part of a node's life spent in a move: draining on the way out, booting and gating on the way in."""

    op_id: str
    instance_id: str
    step: str
    """draining or booting."""
    start: float
    end: float


@dataclass(frozen=True, kw_only=True)
class PoolSlots:
    """A reservation: ``slots`` instances billed every hour from ``start`` to ``end``."""

    name: str
    owner_stack: str
    """Who pays for unused slots: the reservation's owner or the account given billing ownership."""
    owner_account_id: str
    instance_type: str
    gpus_per_node: int
    slots: int
    kind: str
    """odcr | capacity-block | on-demand (on-demand pools reserve nothing: no idle)."""
    price_usd_per_node_hour: float
    reservation_arn: str | None = None
    start: float | None = None
    """Capacity Blocks: when billing starts; None for an ODCR without one."""
    end: float | None = None

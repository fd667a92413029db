"""The usage ledger: every reserved GPU-second of a period, in one class, one account, one hour.

Pure: spans in, rows out. A node's time is ``moving`` while a move's phase covers it, ``spare``
while it is held as a spare, else its stack's role (``training`` / ``inference``). Per pool and
hour, what the nodes did not fill of the reservation is ``idle`` and belongs to the pool's
``owner_account_id``: the reservation's owner, or the consumer that took billing ownership of its
unused capacity. So for every pool and hour the classes add up to the reservation's slots, which
:func:`reconcile` checks; nodes beyond the reservation are reported as ``over`` (billed on-demand).

Cost is linear in events: each span is cut at the hour boundaries it crosses and at the phases of
its own instance, nothing else.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpufleet.automation.usage.spans import MovePhase, NodeSpan, PoolSlots

HOUR_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class UsageRow:
    """Node-seconds of one pool, hour, account and class (and move, for ``moving``)."""

    pool: str
    hour: float
    """Start of the hour (epoch seconds, UTC)."""
    stack: str
    account_id: str
    klass: str
    op_id: str | None
    node_seconds: float
    gpu_hours: float
    cost_usd: float


@dataclass(kw_only=True)
class Ledger:
    start: float
    end: float
    rows: list[UsageRow] = field(default_factory=list)
    over: dict[tuple[str, float], float] = field(default_factory=dict)
    """(pool, hour) -> node-seconds run beyond the reservation's slots."""


def _hours(start: float, end: float) -> Iterable[tuple[float, float, float]]:
    """(hour start, piece start, piece end) for each hour ``[start, end)`` touches."""
    hour = math.floor(start / HOUR_S) * HOUR_S
    while hour < end:
        yield hour, max(start, hour), min(end, hour + HOUR_S)
        hour += HOUR_S


def _cut(start: float, end: float, phases: Sequence[MovePhase]) -> Iterable[tuple[float, float, str | None]]:
    """``[start, end)`` as pieces, each inside one phase (its op id) or outside all (None)."""
    at = start
    for phase in sorted(phases, key=lambda p: p.start):
        lo, hi = max(phase.start, at), min(phase.end, end)
        if hi <= lo:
            continue
        if lo > at:
            yield at, lo, None
        yield lo, hi, phase.op_id
        at = hi
    if at < end:
        yield at, end, None


def compute(start: float, end: float, pools: Sequence[PoolSlots], nodes: Sequence[NodeSpan],
            phases: Sequence[MovePhase] = ()) -> Ledger:
    """The ledger of ``[start, end)``."""
    by_pool = {p.name: p for p in pools}
    by_instance: dict[str, list[MovePhase]] = defaultdict(list)
    for phase in phases:
        by_instance[phase.instance_id].append(phase)
    seconds: dict[tuple[str, float, str, str, str, str | None], float] = defaultdict(float)
    filled: dict[tuple[str, float], float] = defaultdict(float)
    for node in nodes:
        if node.pool not in by_pool:
            continue
        lo, hi = max(node.start, start), min(end if node.end is None else node.end, end)
        for piece_lo, piece_hi, op_id in _cut(lo, hi, by_instance.get(node.instance_id, ())):
            klass = "moving" if op_id else ("spare" if node.spare else node.role)
            for hour, a, b in _hours(piece_lo, piece_hi):
                seconds[(node.pool, hour, node.stack, node.account_id, klass, op_id)] += b - a
                filled[(node.pool, hour)] += b - a
    ledger = Ledger(start=start, end=end)
    for pool in pools:
        if pool.kind == "on-demand":
            continue
        lo, hi = max(start, pool.start or start), min(end, pool.end or end)
        for hour, a, b in _hours(lo, hi):
            reserved = pool.slots * (b - a)
            used = filled.get((pool.name, hour), 0.0)
            if used > reserved:
                ledger.over[(pool.name, hour)] = used - reserved
            if reserved > used:
                seconds[(pool.name, hour, pool.owner_stack, pool.owner_account_id, "idle", None)] += reserved - used
    for (pool_name, hour, stack, account_id, klass, op_id), node_s in sorted(
            seconds.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4], kv[0][5] or "")):
        pool = by_pool[pool_name]
        node_hours = node_s / HOUR_S
        ledger.rows.append(UsageRow(pool=pool_name, hour=hour, stack=stack, account_id=account_id, klass=klass,
                                    op_id=op_id, node_seconds=node_s, gpu_hours=node_hours * pool.gpus_per_node,
                                    cost_usd=node_hours * pool.price_usd_per_node_hour))
    return ledger


def reconcile(ledger: Ledger, pools: Sequence[PoolSlots], tolerance_s: float = 1e-6) -> list[str]:
    """Problems where a pool's classes do not add up to its reservation in some hour (none expected)."""
    total: dict[tuple[str, float], float] = defaultdict(float)
    for row in ledger.rows:
        total[(row.pool, row.hour)] += row.node_seconds
    problems = []
    for pool in pools:
        if pool.kind == "on-demand":
            continue
        lo, hi = max(ledger.start, pool.start or ledger.start), min(ledger.end, pool.end or ledger.end)
        for hour, a, b in _hours(lo, hi):
            want = pool.slots * (b - a) + ledger.over.get((pool.name, hour), 0.0)
            got = total.get((pool.name, hour), 0.0)
            if abs(want - got) > tolerance_s:
                problems.append(f"{pool.name} at hour {hour:.0f}: classes add up to {got:.3f} node-seconds, "
                                f"the reservation holds {want:.3f}")
    return problems

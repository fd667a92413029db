"""The ledger summed the way a reader asks (by account, pool, class or move), and as CSV.

The CSV has one row per pool, hour, account and class, its columns named after the FOCUS 1.x
columns they correspond to (and, for the reservation, the CUR 2.0 capacity-reservation columns), so
a FinOps team can join it to its billing export.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.automation.usage.ledger import HOUR_S, Ledger, UsageRow
from gpufleet.automation.usage.spans import CLASSES, PoolSlots
from gpufleet.infra.errors import BadInputError

GROUPINGS = ("account", "pool", "class", "move")


@dataclass(frozen=True, kw_only=True)
class UsageLine:
    """One line of the report."""

    key: dict[str, str]
    """What the line is for, e.g. {"stack": "training", "class": "moving"}."""
    gpu_hours: float
    cost_usd: float


def _key(row: UsageRow, by: str) -> dict[str, str]:
    if by == "account":
        return {"stack": row.stack, "account_id": row.account_id, "class": row.klass}
    if by == "pool":
        return {"pool": row.pool, "class": row.klass}
    if by == "class":
        return {"class": row.klass}
    return {"op_id": row.op_id or "-", "stack": row.stack}


def summarise(ledger: Ledger, by: str) -> list[UsageLine]:
    """Lines grouped ``by`` one of :data:`GROUPINGS` (``move``: only the moving rows)."""
    if by not in GROUPINGS:
        raise BadInputError(f"--by {by!r}: choose one of {', '.join(GROUPINGS)}")
    sums: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in ledger.rows:
        if by == "move" and row.klass != "moving":
            continue
        total = sums[tuple(_key(row, by).items())]
        total[0] += row.gpu_hours
        total[1] += row.cost_usd
    order = {c: i for i, c in enumerate(CLASSES)}
    lines = [UsageLine(key=dict(k), gpu_hours=v[0], cost_usd=v[1]) for k, v in sums.items()]
    lines.sort(key=lambda line: ([line.key[k] for k in line.key if k != "class"],
                                 order.get(line.key.get("class", ""), 0)))
    return lines


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CSV_COLUMNS = (
    "ChargePeriodStart", "ChargePeriodEnd", "SubAccountId", "x_Stack", "x_Pool", "x_WorkloadClass",
    "x_OperationId", "ResourceType", "CommitmentDiscountId", "CommitmentDiscountStatus",
    "x_CapacityReservationType", "ConsumedQuantity", "ConsumedUnit", "x_GpuHours", "EffectiveCost",
    "BillingCurrency",
)
"""FOCUS column names; ``x_`` marks the columns FOCUS leaves to the provider. CommitmentDiscountId is
the reservation's ARN (CUR 2.0 capacity_reservation_arn) and CommitmentDiscountStatus is Used or
Unused (CUR 2.0 capacity_reservation_status)."""


def to_csv(ledger: Ledger, pools: Sequence[PoolSlots]) -> str:
    by_pool = {p.name: p for p in pools}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in ledger.rows:
        pool = by_pool[row.pool]
        reserved = pool.kind != "on-demand"
        writer.writerow([
            iso(row.hour), iso(row.hour + HOUR_S), row.account_id, row.stack, row.pool, row.klass,
            row.op_id or "", pool.instance_type, pool.reservation_arn or "",
            ("Unused" if row.klass == "idle" else "Used") if reserved else "",
            {"odcr": "odcr", "capacity-block": "capacity-block"}.get(pool.kind, ""),
            f"{row.node_seconds / HOUR_S:.6f}", "Hours", f"{row.gpu_hours:.6f}", f"{row.cost_usd:.6f}", "USD",
        ])
    return out.getvalue()

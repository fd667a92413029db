"""How old the inventory is, and which stacks were updated after it was collected.

``gpufleet status`` and ``gpufleet rebalance`` act on the inventory's view of the fleet: an
Auto Scaling group renamed or a pool added by a later ``pulumi up`` is invisible to them until the
inventory is collected again. For every stack collected from a Pulumi state (kinds s3 and file,
recorded in the inventory's ``sources``), the state is read again and its manifest time compared
with the one recorded at collection. A state that cannot be read is noted, never an error: the
commands still run on the inventory they have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.inventory import FleetInventory, StackSource, parse_time
from gpufleet.automation.pulumi_state import read_state
from gpufleet.infra.errors import GpufleetError

StateClient = Callable[[StackSource], Any]
"""source -> the boto3 S3 client that reads it (None for a local file)."""


@dataclass(frozen=True, kw_only=True)
class StaleStack:
    """A stack updated after the inventory was collected."""

    stack: str
    updated_at: str
    """The stack's last update now (its state's manifest time)."""
    collected_update: str | None
    """Its last update as the inventory recorded it."""

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "updated_at": self.updated_at, "collected_update": self.collected_update}


@dataclass(frozen=True, kw_only=True)
class InventoryAge:
    collected_at: str | None
    """When the inventory was collected (ISO 8601)."""
    age_s: float | None
    """Seconds since then."""
    stale: tuple[StaleStack, ...] = ()
    """Stacks updated since: collect the inventory again."""
    notes: tuple[str, ...] = ()
    """Stacks whose state could not be checked, and why."""

    @property
    def summary(self) -> str:
        if self.collected_at is None:
            return "inventory: collection time unknown"
        line = f"inventory collected {self.collected_at} ({_ago(self.age_s or 0.0)} ago)"
        if self.stale:
            line += "; OLDER than the last update of " + ", ".join(
                f"{s.stack} ({s.updated_at})" for s in self.stale) + ": run `gpufleet inventory collect`"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"collected_at": self.collected_at, "age_s": self.age_s, "stale": [s.to_dict() for s in self.stale],
                "notes": list(self.notes)}


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def default_state_client(source: StackSource) -> Any:
    if source.kind != "s3":
        return None
    import boto3

    return boto3.client("s3")


def inventory_age(inventory: FleetInventory, *, state_client: StateClient = default_state_client,
                  now: dt.datetime | None = None) -> InventoryAge:
    """The inventory's age, and each state-backed stack's last update read again now."""
    now = now or dt.datetime.now(dt.UTC)
    age = (now - parse_time(inventory.collected_at)).total_seconds() if inventory.collected_at else None
    stale, notes = [], []
    for stack, source in inventory.sources.items():
        if source.kind not in ("s3", "file"):
            if source.kind == "outputs":
                notes.append(f"{stack}: collected from an outputs file; its last update is unknown")
            continue
        try:
            state = read_state(source.kind, source.location, s3=state_client(source))
        except GpufleetError as err:
            notes.append(f"{stack}: could not read {source.location} to check it: {err.message}")
            continue
        if state is None:
            notes.append(f"{stack}: {source.location} is gone (stack removed or renamed?)")
            continue
        known = source.updated_at or inventory.collected_at
        if state.updated_at and (known is None or parse_time(state.updated_at) > parse_time(known)):
            stale.append(StaleStack(stack=stack, updated_at=state.updated_at, collected_update=source.updated_at))
    return InventoryAge(collected_at=inventory.collected_at, age_s=age, stale=tuple(stale), notes=tuple(notes))

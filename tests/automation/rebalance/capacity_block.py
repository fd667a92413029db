"""The sandbox's H100 pool bought as a Capacity Block, for the scheduler's deadline tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

POOL = "h100-use1-az4"
END = dt.datetime(2026, 3, 10, 11, 30, tzinfo=dt.UTC)
"""The block's end (every block ends at 11:30 UTC): EC2 terminates its instances from 11:00."""


def as_capacity_block(inventory: Path, into: Path) -> Path:
    """``inventory`` with the pool POOL a Capacity Block ending at END, written to ``into``."""
    doc = json.loads(inventory.read_text())
    [pool] = [p for stack in doc["stacks"].values() for p in stack.get("pools", []) if p["name"] == POOL]
    pool.update(kind="capacity-block", startTime="2026-03-01T11:30:00+00:00", endTime=END.isoformat())
    into.write_text(json.dumps(doc))
    return into

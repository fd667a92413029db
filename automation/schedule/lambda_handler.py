"""The scheduler's Lambda entry point: one reconcile pass, the same as `gpufleet schedule reconcile`.

The function's archive (gpufleet.infra.scheduler_archive) holds this package's modules and, under
``fleet/``, the platform's stack file and the inventory (every stack's outputs) as of the platform's
last deployment: the function reads nothing else, so its role needs no bucket. EventBridge Scheduler
calls it every minute with ``{}``; a hand-made event may carry ``"at"`` (ISO 8601: decide for that
instant) and ``"probe"`` (the gate probe, as ``--probe``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from gpufleet.automation.schedule import runner
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.stackfile import discover_stacks, load_stack

FLEET_DIR = Path(__file__).resolve().parents[3] / "fleet"
"""Beside the ``gpufleet`` folder at the archive's root."""
INVENTORY = "inventory.json"
STACKS = "stacks"

log = logging.getLogger("gpufleet.schedule")
log.setLevel(logging.INFO)


def handler(event: dict[str, Any] | None, context: Any = None, fleet_dir: Path = FLEET_DIR) -> dict[str, Any]:
    """Run one pass; the result is logged (one JSON line) and returned. An error propagates, so
    Lambda counts it in Errors (the alarm) and the next minute's pass retries."""
    at = (event or {}).get("at")
    now = None
    if at is not None:
        try:
            now = dt.datetime.fromisoformat(str(at))
        except ValueError:
            raise BadInputError(f"event.at {at!r}: expected an ISO 8601 instant") from None
    specs = [load_stack(p) for p in discover_stacks(fleet_dir / STACKS)]
    reconciler = runner.make_reconciler(fleet_dir / INVENTORY, specs, probe=(event or {}).get("probe"))
    result = dataclasses.asdict(reconciler.once(now))
    log.info(json.dumps({"schedulePass": result}, default=str))
    return result

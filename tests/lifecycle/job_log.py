"""The reference job's events as its log holds them: one JSON object a line (lifecycle/jobs/), among
torchrun's and Slurm's own lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def job_events(log: Path) -> list[dict[str, Any]]:
    """Every JSON event line of ``log``, in order; a line cut short (the job still writing) is left out."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out

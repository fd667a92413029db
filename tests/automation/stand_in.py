"""The sandbox's inventory with a real orchestrator answering for one role's node groups."""

from __future__ import annotations

import json
from pathlib import Path


def real_orchestrators(inventory_path: Path, dest: Path, *, without: str) -> Path:
    """``inventory_path`` less its orchestrator stand-in (a real Slurm or the Kubernetes API fake
    answers), the node groups of the ``without`` stack given no orchestrator (nothing answers for
    them here), written to ``dest``."""
    doc = json.loads(inventory_path.read_text())
    doc.pop("orchestratorStandIn")
    for group in doc["stacks"][without]["nodeGroups"]:
        group["orchestrator"] = "none"
    dest.write_text(json.dumps(doc))
    return dest

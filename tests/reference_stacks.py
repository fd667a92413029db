"""A copy of the reference fleet's stack files (stacks/Pulumi.*.yaml), for a test to break."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def copy_stacks(into: Path) -> Path:
    """The reference stack files copied into ``into``, a new directory."""
    into.mkdir()
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, into / path.name)
    return into

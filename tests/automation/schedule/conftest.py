"""The schedule tests' fixtures: a copy of the stack files to break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the reference stack files to break."""
    target = tmp_path / "stacks"
    target.mkdir()
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, target / path.name)
    return target

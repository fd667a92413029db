"""The schedule tests' fixtures: a copy of the stack files to break."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference_stacks import copy_stacks


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the reference stack files to break."""
    return copy_stacks(tmp_path / "stacks")

"""Fixtures of the node-side tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lifecycle.node_image import make_node_python


@pytest.fixture(scope="session")
def node_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter holding only the node's packages (tests/lifecycle/node_image.py)."""
    return make_node_python(tmp_path_factory.mktemp("node-venv") / "venv")

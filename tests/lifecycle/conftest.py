"""Fixtures of the node-side tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require
from tests.lifecycle.node_image import MissingNodePackage, make_node_python


@pytest.fixture(scope="session")
def node_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter holding only the node's packages (tests/lifecycle/node_image.py)."""
    try:
        return make_node_python(tmp_path_factory.mktemp("node-venv") / "venv")
    except MissingNodePackage as missing:
        require(False, f"the node's packages: {missing} (pip install -e '.[torch]')")
        raise

"""Where gpufleet keeps its state, found the way Pulumi finds its project.

From the current directory up to the first one holding ``Pulumi.yaml`` (the project root): its
``.gpufleet/`` holds the sandbox's state and the fleet inventory, its ``stacks/`` the stack files.
So `gpufleet sandbox down` from ``docs/`` stops the sandbox started from the root. Outside any
project, the current directory stands in for the root. ``GPUFLEET_STATE_DIR`` and
``GPUFLEET_INVENTORY`` override the state directory and the inventory file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROJECT_FILE = "Pulumi.yaml"
STATE_DIR_ENV = "GPUFLEET_STATE_DIR"
INVENTORY_ENV = "GPUFLEET_INVENTORY"


def project_root(cwd: Path | None = None) -> Path | None:
    """The nearest directory at or above ``cwd`` holding Pulumi.yaml; None outside a project."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):  # bounded by the path's depth
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def _root(cwd: Path | None) -> Path:
    found = project_root(cwd)
    return found if found is not None else (cwd or Path.cwd())


def state_dir(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """``$GPUFLEET_STATE_DIR``, else ``<project root>/.gpufleet``."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    return _root(cwd) / ".gpufleet"


def inventory_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """``$GPUFLEET_INVENTORY``, else ``inventory.json`` in the state directory."""
    env = os.environ if environ is None else environ
    if env.get(INVENTORY_ENV):
        return Path(env[INVENTORY_ENV])
    return state_dir(env, cwd) / "inventory.json"


def stacks_dir(cwd: Path | None = None) -> Path:
    """``<project root>/stacks``: where the Pulumi.<stack>.yaml files are."""
    return _root(cwd) / "stacks"

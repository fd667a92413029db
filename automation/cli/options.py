"""Options several commands share, spelled once: health tiers, the AWS profile, --yes, and where the
state, the inventory and the stack files are (found as Pulumi finds its project: gpufleet.automation.project)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpufleet.automation import project
from gpufleet.infra.errors import BadInputError
from gpufleet.lifecycle.health.results import Tier, parse_tiers

Tiers = Annotated[str | None, typer.Option("--tiers", metavar="quick,performance,deep",
                                           help="Health check tiers, comma-separated.")]
Profile = Annotated[str | None, typer.Option("--profile", metavar="NAME",
                                             help="AWS profile (default: AWS_PROFILE, or the default chain).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do it, without asking.")]


def tiers(text: str | None, default: tuple[Tier, ...]) -> tuple[Tier, ...]:
    """``--tiers`` parsed; an unknown word exits 2 naming it."""
    if text is None:
        return default
    try:
        return parse_tiers(text)
    except ValueError as error:
        raise BadInputError(f"--tiers {text!r}: {error}", "e.g. --tiers quick,performance") from None


def _inventory() -> Path:
    return project.inventory_path()


def _state_dir() -> Path:
    return project.state_dir()


def _stacks_dir() -> Path:
    return project.stacks_dir()


Inventory = Annotated[Path, typer.Option("--inventory", "-i", default_factory=_inventory, show_default=False,
                                         help="Fleet inventory (default: $GPUFLEET_INVENTORY, else inventory.json "
                                              "in the state directory).")]
StateDir = Annotated[Path, typer.Option("--state-dir", default_factory=_state_dir, show_default=False,
                                        help="Where sandbox.json, its log and the inventory live (default: "
                                             "$GPUFLEET_STATE_DIR, else .gpufleet/ next to the nearest Pulumi.yaml).")]
StacksDir = Annotated[Path, typer.Option("--stacks-dir", default_factory=_stacks_dir, show_default=False,
                                         help="Where the Pulumi.<stack>.yaml files are (default: stacks/ next to "
                                              "the nearest Pulumi.yaml).")]

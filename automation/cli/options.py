"""Options several commands share, spelled once: health tiers, the AWS profile, --yes."""

from __future__ import annotations

from typing import Annotated

import typer

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

"""The `gpufleet` command. One module per noun registers its commands on ``app``."""

from __future__ import annotations

from importlib import metadata

import typer

app = typer.Typer(
    name="gpufleet",
    help="GPU fleets on AWS: plan stacks offline, move reserved capacity, check node health, launch resilient jobs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpufleet {metadata.version('gpufleet')}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """A group even while only one command is registered (Typer would flatten a single command)."""


# Each command module registers its commands on ``app`` when imported (one name per noun, sorted).
from gpufleet.automation.cli import (  # noqa: E402,F401
    heal,
    health,
    inventory,
    jobs,
    launch,
    plan,
    rebalance,
    sandbox,
    status,
)


def run() -> None:
    app()


if __name__ == "__main__":
    run()

"""The `gpufleet` command. One module per noun registers its commands on ``app``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import typer

# Typer vendors Click as typer._click; its parser raises these, not the click package's.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from gpufleet.automation.cli.output import fail, route_warnings
from gpufleet.infra.errors import BadInputError

HELP = {"help_option_names": ["-h", "--help"]}


def _placeholder(name: str) -> str:
    """A readable help placeholder for an option's value: --state-dir DIR, --inventory PATH, --pool POOL."""
    if name.endswith("_dir"):
        return "DIR"
    return {"inventory": "PATH", "chart": "PATH", "profile": "NAME"}.get(name, name.upper().replace("_", "-"))


def _name_placeholders(group: Any) -> None:
    """Typer labels values by Python type (``<path>``, ``<list[str]>``); name them instead."""
    for command in group.commands.values():
        if hasattr(command, "commands"):
            _name_placeholders(command)
        for param in command.params:
            if param.metavar is not None or not param.name:
                continue
            if param.param_type_name == "argument":
                param.metavar = param.name.upper()
            elif param.param_type_name == "option" and not param.is_flag:
                param.metavar = _placeholder(param.name)


class Gpufleet(TyperGroup):
    """The root group: usage errors (an unknown option, a bad value) read like every other failure,
    one ``error:`` line and a hint on stderr, and an error object on stdout under ``--json``."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        _name_placeholders(self)
        route_warnings()
        try:
            code = super().main(args=argv, prog_name=prog_name or "gpufleet", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except NoArgsIsHelpError as error:  # `gpufleet`, `gpufleet sandbox`: the help, as asked
            error.show()
            code = 0
        except ClickException as error:
            where = error.ctx.command_path if isinstance(error, UsageError) and error.ctx else "gpufleet"
            code = fail(BadInputError(error.format_message(), f"see `{where} --help`"), "--json" in argv).exit_code
        except typer.Abort:
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="gpufleet",
    cls=Gpufleet,
    help="GPU fleets on AWS: plan stacks offline, move reserved capacity, check node health, launch resilient jobs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings=HELP,
    rich_markup_mode=None,  # plain Click help: flags show no `<bool>`, and it reads the same in a pipe
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
    schedule,
    status,
    usage,
)


def run() -> None:
    app()


if __name__ == "__main__":
    run()

"""`gpufleet inventory collect`: the fleet inventory from each stack's Pulumi state."""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer

from gpufleet.automation import collect as core
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, StacksDir
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.cli.tables import table

inventory_app = typer.Typer(help="The fleet inventory: every stack's outputs, read through the contract.",
                            no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(inventory_app, name="inventory")


@inventory_app.command("collect")
@handle_errors
def collect(
    stacks_dir: StacksDir,
    inventory: Inventory,
    backend: Annotated[str | None, typer.Option("--backend", help="Self-managed Pulumi backend: s3://<bucket> "
                                                "(or s3://<bucket>/<prefix>) or file://<dir> (default: PULUMI_BACKEND_URL).")] = None,
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="Stack to read (repeatable; default: every "
                                                    "stack file in --stacks-dir).")] = None,
    from_file: Annotated[list[str] | None, typer.Option("--from-file", metavar="STACK=FILE", help="That stack's outputs "
                                                        "from `pulumi stack output --json` (repeatable).")] = None,
    project: Annotated[str, typer.Option("--project", help="Pulumi project name (Pulumi.yaml).")] = core.DEFAULT_PROJECT,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile for an S3 backend.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Read each stack's outputs from its Pulumi state, check them against the contract, write the inventory."""
    args = core.CollectArgs(stacks=tuple(stack or ()), from_files=tuple(from_file or ()), backend=backend,
                            project=project, stacks_dir=stacks_dir, inventory=inventory, profile=profile)
    with err_console.status("reading the stacks' state...") as status:
        result = core.collect(args, on_stack=lambda name: status.update(f"reading {name}"))
    if json_output:
        print_json(result)
        return
    console.print(f"inventory {result.inventory} (collected {result.collected_at})", highlight=False)
    where = shared_folder([s.location for s in result.stacks])
    if where:  # on its own line, whole, so it can be copied
        console.print(f"state read from {where}/", highlight=False, soft_wrap=True)
    stacks = table("stack", "role", "from", "last update", "pools", "node groups", whole=("from",))
    for s in result.stacks:
        stacks.add_row(s.stack, s.role, s.location[len(where) + 1:] if where else s.location,
                       to_second(s.updated_at) if s.updated_at else "unknown", str(s.pools), str(s.node_groups))
    console.print(stacks)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def shared_folder(locations: list[str]) -> str:
    """The folder (or bucket prefix) every state was read from, named once in the title so the rows
    show only the file: a full path folded into a narrow column cannot be read or copied."""
    if len(locations) < 2 or not all("/" in loc for loc in locations):
        return ""
    common = os.path.commonprefix(locations)
    return common[:common.rfind("/")] if "/" in common else ""


def to_second(stamp: str) -> str:
    """A manifest time (nanoseconds, RFC 3339) to the second, as the other commands print times."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    return f"{m.group(1)}{m.group(3)}" if m else stamp

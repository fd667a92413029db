"""`gpufleet inventory collect`: the fleet inventory from each stack's Pulumi state."""

from __future__ import annotations

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
    stacks = table("stack", "role", "from", "last update", "pools", "node groups")
    for s in result.stacks:
        stacks.add_row(s.stack, s.role, s.location, s.updated_at or "unknown", str(s.pools), str(s.node_groups))
    console.print(stacks)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)

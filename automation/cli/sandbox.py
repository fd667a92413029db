"""`gpufleet sandbox up|down|status|env`: the emulated AWS on 127.0.0.1, holding the rendered program."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import StacksDir, StateDir
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.cli.tables import Output, OutputFormat, table
from gpufleet.automation.sandbox import control

sandbox_app = typer.Typer(help="An emulated AWS (moto + capacity extension) holding the fleet the Pulumi program builds.",
                          no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(sandbox_app, name="sandbox")

Json = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]


@sandbox_app.command("up")
@handle_errors
def up(
    stacks_dir: StacksDir,
    state_dir: StateDir,
    inventory: Annotated[Path | None, typer.Option("--inventory", help="Write the inventory here (default: <state-dir>/inventory.json).")] = None,
    output: Output = OutputFormat.table,
    json_output: Json = False,
) -> None:
    """Start the sandbox server, apply the program rendered over the stack files, write the inventory."""
    info = control.up(stacks_dir, state_dir, inventory=inventory,
                      progress=lambda line: err_console.print(Text(line), highlight=False))
    if json_output:
        print_json(info)
        return
    render(info, wide=output is OutputFormat.wide)
    console.print("\n# point boto3 and gpufleet at it:", highlight=False)
    console.print(control.export_lines(info.env), highlight=False, soft_wrap=True)


@sandbox_app.command("status")
@handle_errors
def status(state_dir: StateDir, output: Output = OutputFormat.table,
           json_output: Json = False) -> None:
    """Is the sandbox running, where, and how full its capacity reservations are."""
    info = control.status(state_dir)
    print_json(info) if json_output else render(info, wide=output is OutputFormat.wide)
    if info.state != "running":
        raise typer.Exit(1)


@sandbox_app.command("down")
@handle_errors
def down(state_dir: StateDir, json_output: Json = False) -> None:
    """Stop the sandbox server (exactly the recorded PID) and remove the inventory it wrote."""
    info = control.down(state_dir)
    print_json(info) if json_output else render(info)


@sandbox_app.command("env")
@handle_errors
def env(state_dir: StateDir,
        unset: Annotated[bool, typer.Option("--unset", help="Print the `unset` line instead, for after `sandbox down`.")] = False,
        json_output: Json = False) -> None:
    """Print the `export AWS_...` lines for `eval "$(gpufleet sandbox env)"` (`--unset`: the line that undoes them)."""
    if unset:  # the names only: works whether or not the sandbox still runs
        names = list(control.env_for("", ""))
        print_json({"unset": names}) if json_output else console.print(f"unset {' '.join(names)}", highlight=False,
                                                                         soft_wrap=True)
        return
    values = control.environment(state_dir)
    print_json(values) if json_output else console.print(control.export_lines(values), highlight=False, soft_wrap=True)


def render(info: control.SandboxInfo, wide: bool = False) -> None:
    where = f" at {info.endpoint} (pid {info.pid})" if info.endpoint and info.state != "stopped" else ""
    note = " (already running; nothing changed)" if info.already_running else ""
    console.print(f"sandbox: [bold]{info.state}[/]{where}{note}", highlight=False)
    if info.timings and info.state == "running":
        t = info.timings
        console.print(f"rendered in {t.get('render_s', 0):.2f} s while the server started ({t.get('server_s', 0):.2f} s), "
                      f"applied in {t.get('apply_s', 0):.2f} s; inventory {info.inventory}", highlight=False)
    if info.reservations:
        reservations = table("pool", "type", "AZ ID", "total", "used", "free", "shared with",
                             *(["AZ", "reservation"] if wide else []), title="capacity reservations")
        for r in info.reservations:
            reservations.add_row(r["name"], r["instance_type"], r["az_id"], str(r["total"]), str(r["used"]),
                                 str(r["available"]), "\n".join(r["shared_with"]) or "-",
                                 *([r["az"], r["id"]] if wide else []))
        console.print(reservations)

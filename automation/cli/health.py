"""`gpufleet health`: run the node health checks on the fleet, a table per node; --replace swaps failed nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.health import replace as core
from gpufleet.automation.health.gate import GateReport
from gpufleet.automation.inventory import DEFAULT_PATH

STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


@app.command("health")
@handle_errors
def health(
    pool: Annotated[str | None, typer.Option("--pool", help="Only the node groups of this pool.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Add DCGM diagnostics level 3 (tens of minutes).")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Quick tier only (seconds per node).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Terminate FAILED instances (their group replaces them "
                                                             "from the same reservation), then check the new ones.")] = False,
    probe: Annotated[str, typer.Option("--probe", help="orchestrator: where the nodes live (a Job on the node, srun); "
                                                         "ssm: SSM Run Command (not in a PHI stack); local: this host "
                                                         "stands in.")] = "orchestrator",
    max_per_group: Annotated[float, typer.Option("--max-per-group", help="Replace at most this many nodes of a group per "
                                                  "pass: a count, or a fraction (< 1) of the group.")] = 0.25,
    max_per_pool: Annotated[float, typer.Option("--max-per-pool", help="The same over the groups of a pool.")] = 0.25,
    both_accounts: Annotated[bool, typer.Option("--both-accounts", help="Let one pass replace in training and "
                                                "inference.")] = False,
    inventory: Annotated[Path, typer.Option("--inventory", help="Fleet inventory (stack outputs).")] = DEFAULT_PATH,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check every node of the fleet (quick + performance tiers; --deep adds DCGM) and show a table per node."""
    args = core.HealthArgs(pool=pool, deep=deep, quick_only=quick, replace=replace, probe=probe, inventory=inventory,
                           max_per_group=max_per_group, max_per_pool=max_per_pool, both_accounts=both_accounts)
    with err_console.status("finding nodes...") as status:

        def show(message: str) -> None:
            status.update(message)
            err_console.print(Text(message, style="dim"), highlight=False)

        run = core.run_health(args, progress=show)
    if json_output:
        print_json(run)
    else:
        render(run.report, "health")
        for r in run.replacements:
            console.print(Text(f"replaced {r.instance_id} in {r.asg_name}: "
                               f"{', '.join(r.replaced_by) or 'nothing in service yet'}"))
        if run.recheck is not None:
            render(run.recheck, "replacements")
        if run.fleet_problem:
            err_console.print(Text.assemble(("fleet problem: ", "bold red"), run.fleet_problem))
        for note in run.notes:
            err_console.print(Text.assemble(("note: ", "yellow"), note))
    if not run.ok:
        raise typer.Exit(1)


def render(report: GateReport, title: str) -> None:
    for verdict in report.nodes:
        node = verdict.report
        table = Table("check", "device", "status", "measured", "expected", "action", "detail", title_justify="left",
                      title=f"{title}: {escape(verdict.node)} {escape(node.instance_type or '')} [{STYLE[verdict.status.value]}]"
                            f"{verdict.status.value}[/] ({node.duration_s:.1f} s)")
        for r in node.results:
            table.add_row(Text(r.check), Text(r.device or "-"), f"[{STYLE[r.status.value]}]{r.status.value}[/]",
                          f"{r.measured:.4g} {r.unit}" if r.measured is not None else "-",
                          f"{r.expected:.4g} {r.unit}" if r.expected is not None else "-", r.action.value, Text(r.detail))
        console.print(table)
    for r in report.pool_results:
        console.print(Text.assemble((r.status.value, STYLE[r.status.value]), f" pool {r.detail}"))
    console.print(Text("all nodes pass" if report.ok else "FAILED: " + report.summary, style="bold"), highlight=False)

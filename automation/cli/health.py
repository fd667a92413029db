"""`gpufleet health`: run the node health checks on the fleet, a table per node; --replace swaps failed nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, Profile, Tiers
from gpufleet.automation.cli.options import tiers as parse_tiers
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.tables import Output, OutputFormat, table
from gpufleet.automation.health import replace as core
from gpufleet.automation.health.gate import GateReport
from gpufleet.lifecycle.health.results import Tier

STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


@app.command("health")
@handle_errors
def health(
    inventory: Inventory,
    pool: Annotated[str | None, typer.Option("--pool", help="Only the node groups of this pool.")] = None,
    tiers: Tiers = None,
    replace: Annotated[bool, typer.Option("--replace", help="Terminate FAILED instances (their group replaces them "
                                                             "from the same reservation), then check the new ones.")] = False,
    probe: Annotated[str, typer.Option("--probe", metavar="orchestrator|ssm|local",
                                       help="orchestrator: where the nodes live (a Job on the node, srun); ssm: SSM "
                                            "Run Command (not in a PHI stack); local: this host stands in.")] = "orchestrator",
    max_per_group: Annotated[float, typer.Option("--max-per-group", metavar="N", help="Replace at most this many nodes "
                                                 "of a group per pass: a count, or a fraction (< 1) of the group.")] = 0.25,
    max_per_pool: Annotated[float, typer.Option("--max-per-pool", metavar="N",
                                                help="The same over the groups of a pool.")] = 0.25,
    both_accounts: Annotated[bool, typer.Option("--both-accounts", help="Let one pass replace in training and "
                                                "inference.")] = False,
    checkpoint_grace: Annotated[float | None, typer.Option(
        "--checkpoint-grace", metavar="SECONDS", help="Seconds a failed node's jobs get after the checkpoint signal "
        "to save and requeue themselves before --replace requeues them (default: from their published checkpoint "
        "time, 30 s where none).")] = None,
    profile: Profile = None,
    output: Output = OutputFormat.table,
    matrix: Annotated[bool, typer.Option("--matrix", help="A node-by-check grid instead of the tables.")] = False,
    chart: Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Also draw the node-by-check "
                                               "grid to this file (.png, .svg or .pdf).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check every node of the fleet (default tiers quick,performance; deep adds DCGM): a line per node."""
    if chart is not None:
        from gpufleet.automation.figures import check_path

        check_path(chart)
    args = core.HealthArgs(pool=pool, tiers=parse_tiers(tiers, (Tier.QUICK, Tier.PERFORMANCE)), replace=replace,
                           probe=probe, inventory=inventory, profile=profile, max_per_group=max_per_group,
                           max_per_pool=max_per_pool, both_accounts=both_accounts,
                           checkpoint_grace_s=checkpoint_grace)
    with err_console.status("finding nodes...") as status:

        def show(message: str) -> None:
            status.update(message)
            err_console.print(Text(message, style="dim"), highlight=False)

        run = core.run_health(args, progress=show)
    if chart is not None:
        from gpufleet.automation.cli.charts import health_grid

        health_grid(run.report, chart)
        say(f"health grid drawn to {chart}", fold=False)
    if json_output:
        print_json(run, versioned=True)
    else:
        (render_matrix if matrix else render)(run.report, "health", wide=output is OutputFormat.wide)
        for d in run.drains:
            if d.signalled:
                console.print(Text(f"{d.orchestrator} {d.stack}: of the jobs told to checkpoint, left on their own "
                                   f"{', '.join(d.left_on_their_own) or 'none'}; requeued after the {d.grace_s:.0f} s "
                                   f"grace {', '.join(d.requeued) or 'none'}"))
        for r in run.replacements:
            console.print(Text(f"replaced {r.instance_id} in {r.asg_name}: "
                               f"{', '.join(r.replaced_by) or 'nothing in service yet'}"))
        if run.recheck is not None:
            (render_matrix if matrix else render)(run.recheck, "replacements", wide=output is OutputFormat.wide)
        if run.fleet_problem:
            err_console.print(Text.assemble(("fleet problem: ", "bold red"), run.fleet_problem))
        for note in run.notes:
            err_console.print(Text.assemble(("note: ", "yellow"), note))
    if not run.ok:
        raise typer.Exit(1)


def render(report: GateReport, title: str, wide: bool = False) -> None:
    """One line per node, then the checks that did not pass (every check with ``-o wide``)."""
    nodes = table("node", "type", "status", "time", "not passing", title=f"{title}: {len(report.nodes)} nodes")
    for verdict in report.nodes:
        node = verdict.report
        bad = [r.check for r in node.results if r.status.value in ("WARN", "FAIL")]
        nodes.add_row(escape(verdict.node), escape(node.instance_type or "-"), f"[{STYLE[verdict.status.value]}]{verdict.status.value}[/]",
                      f"{node.duration_s:.1f} s", escape(", ".join(bad)) or "-")
    console.print(nodes)
    checks = table("node", "check", "device", "status", "measured", "expected", "action", "detail",
                   title="every check" if wide else "checks not passing (every check: -o wide)")
    for verdict in report.nodes:
        for r in verdict.report.results:
            if wide or r.status.value in ("WARN", "FAIL"):
                checks.add_row(escape(verdict.node), escape(r.check), escape(r.device or "-"), f"[{STYLE[r.status.value]}]{r.status.value}[/]",
                               f"{r.measured:.4g} {r.unit}" if r.measured is not None else "-",
                               f"{r.expected:.4g} {r.unit}" if r.expected is not None else "-", r.action.value, escape(r.detail))
    if checks.row_count:
        console.print(checks)
    for r in report.pool_results:
        console.print(f"[{STYLE[r.status.value]}]{r.status.value}[/] pool {escape(r.detail)}", highlight=False)
    console.print(Text("all nodes pass" if report.ok else "FAILED: " + report.summary, style="bold"), highlight=False)


MARK = {"PASS": ".", "WARN": "W", "FAIL": "F", "SKIP": "-"}
ORDER = ("SKIP", "PASS", "WARN", "FAIL")


def grid_cells(report: GateReport) -> tuple[list[str], list[dict[str, str]]]:
    """The checks in the order first seen, and per node the worst status of each check it ran (a check
    runs once per device, so a node has several results for one check)."""
    checks = list(dict.fromkeys(r.check for v in report.nodes for r in v.report.results))
    rows: list[dict[str, str]] = []
    for verdict in report.nodes:
        worst: dict[str, str] = {}
        for r in verdict.report.results:
            if ORDER.index(r.status.value) >= ORDER.index(worst.get(r.check, "SKIP")):
                worst[r.check] = r.status.value
        rows.append(worst)
    return checks, rows


def render_matrix(report: GateReport, title: str, wide: bool = False) -> None:
    """Nodes down, checks across (numbered, with a key below, so the grid fits 80 columns)."""
    checks, cells_by_node = grid_cells(report)
    grid = table("node", *(str(i) for i in range(1, len(checks) + 1)), "status",
                 title=f"{title}: {len(report.nodes)} nodes x {len(checks)} checks", whole=("node",))
    for verdict, worst in zip(report.nodes, cells_by_node, strict=True):
        cells = [f"[{STYLE[worst[c]]}]{MARK[worst[c]]}[/]" if c in worst else " " for c in checks]
        grid.add_row(escape(verdict.node), *cells, f"[{STYLE[verdict.status.value]}]{verdict.status.value}[/]")
    console.print(grid)
    console.print(Text("  ".join(f"{i} {c}" for i, c in enumerate(checks, 1))), highlight=False)
    console.print(". pass  W warn  F fail  - skip", highlight=False)
    console.print(Text("all nodes pass" if report.ok else "FAILED: " + report.summary, style="bold"), highlight=False)

"""`gpufleet usage`: where the GPU-hours went, by account, pool, workload class or move."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.inventory import DEFAULT_PATH, load_inventory
from gpufleet.automation.usage import chart, ledger, report, sources
from gpufleet.automation.usage.period import parse_period
from gpufleet.infra.errors import BadInputError


@app.command("usage")
@handle_errors
def usage(
    since: Annotated[str, typer.Option("--since", metavar="TIME", help="Start: an age (7d, 12h) or ISO 8601.")] = "7d",
    until: Annotated[str, typer.Option("--until", metavar="TIME", help="End: 'now', an age or ISO 8601.")] = "now",
    by: Annotated[str, typer.Option("--by", metavar="account|pool|class|move", help="How to group.")] = "account",
    inventory: Annotated[Path, typer.Option("--inventory", "-i", help="Fleet inventory (stack outputs).")] = DEFAULT_PATH,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile for the platform account.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Write hourly rows as CSV (FOCUS column names).")] = None,
    chart_path: Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Draw GPUs per account and class over time.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """GPU-hours and cost of the reserved capacity: training, inference, moving, spare and idle."""
    now = time.time()
    start, end = parse_period(since, until, now)
    if by not in report.GROUPINGS:
        raise BadInputError(f"--by {by!r}: choose one of {', '.join(report.GROUPINGS)}")
    if chart_path is not None and chart_path.suffix.lower() != ".png":
        raise BadInputError(f"--chart {str(chart_path)!r}: the chart is written as PNG; name a .png file")
    fleet = load_inventory(inventory)
    if start == end:
        pools, nodes, phases = [], [], []
    else:
        access = AwsAccess(fleet, operation="usage", profile=profile)
        with err_console.status("reading the fleet's history...") as spinner:
            pools, nodes, phases = sources.read(fleet, access, start, now=now, on_step=spinner.update)
    result = ledger.compute(start, end, pools, nodes, phases)
    problems = ledger.reconcile(result, pools)
    lines = report.summarise(result, by)
    if csv_path is not None:
        csv_path.write_text(report.to_csv(result, pools))
    if chart_path is not None:
        chart.write(chart_path, result, phases)
    doc = {"since": report.iso(start), "until": report.iso(end), "by": by,
           "lines": [{**line.key, "gpu_hours": round(line.gpu_hours, 6), "cost_usd": round(line.cost_usd, 2)}
                     for line in lines],
           "total": {"gpu_hours": round(sum(r.gpu_hours for r in result.rows), 6),
                     "cost_usd": round(sum(r.cost_usd for r in result.rows), 2)},
           "over_reservation_node_hours": round(sum(result.over.values()) / ledger.HOUR_S, 6),
           "reconciled": not problems, "problems": problems}
    if json_output:
        print_json(doc)
        return
    if not lines:
        console.print(f"no usage between {doc['since']} and {doc['until']}", highlight=False)
        return
    columns = list(lines[0].key)
    console.print(f"GPU usage from {doc['since']} to {doc['until']} (by {by})", highlight=False)
    table = Table(*columns, "GPU-hours", "cost $")
    for line in lines:
        table.add_row(*(line.key[c] for c in columns), f"{line.gpu_hours:,.2f}", f"{line.cost_usd:,.2f}")
    table.add_row(*(["total"] + [""] * (len(columns) - 1)), f"{sum(line.gpu_hours for line in lines):,.2f}",
                  f"{sum(line.cost_usd for line in lines):,.2f}", style="bold")
    console.print(table)
    if doc["over_reservation_node_hours"]:
        console.print(f"[yellow]{doc['over_reservation_node_hours']:.2f} node-hours ran beyond the reservations "
                      "(billed on-demand)[/]", highlight=False)
    for problem in problems:
        err_console.print(f"[red]does not reconcile:[/] {problem}", highlight=False, soft_wrap=True)

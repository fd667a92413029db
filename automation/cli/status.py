"""`gpufleet status`: pools, consumers, free capacity, moves in flight, node group health."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from gpufleet.automation import project
from gpufleet.automation import status as core
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, Profile
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.tables import Output, OutputFormat, table
from gpufleet.automation.inventory import FleetInventory, load_inventory
from gpufleet.automation.sandbox import control
from gpufleet.infra.errors import AwsCallError


@app.command("status")
@handle_errors
def status(
    inventory: Inventory,
    pool: Annotated[list[str] | None, typer.Option("--pool", "-p", help="Only this pool (repeatable).")] = None,
    profile: Profile = None,
    output: Output = OutputFormat.table,
    chart: Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Also draw capacity per pool and "
                                               "consumer over the last --hours to this file (.png, .svg, .pdf).")] = None,
    hours: Annotated[float, typer.Option("--hours", metavar="H", help="The window --chart draws (from the groups' "
                                         "scaling activities, kept six weeks).", min=0.1, max=1008)] = 6.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")] = False,
) -> None:
    """Live capacity: per pool the reservation, nodes per consumer, free and in flight; per node group its health."""
    if chart is not None:
        from gpufleet.automation.figures import check_path

        check_path(chart)
    fleet = load_inventory(inventory)
    core.select_pools(fleet, pool or ())
    access = AwsAccess(fleet, operation="status", profile=profile)
    try:
        with err_console.status("reading the fleet...") as spinner:
            result = core.fleet_status(fleet, access, pools=pool or (), on_step=spinner.update)
            source = draw_history(fleet, access, result, chart, hours, on_step=spinner.update) if chart is not None else ""
    except AwsCallError as error:
        raise with_sandbox_hint(error) from None
    if chart is not None:
        say(f"capacity over the last {hours:g} h drawn to {chart}", fold=False)
        err_console.print(Text(f"from {source}"), highlight=False)
    print_json(result, versioned=True) if json_output else render(result, wide=output is OutputFormat.wide)


def draw_history(fleet: FleetInventory, access: AwsAccess, result: core.FleetStatus, path: Path, hours: float, *,
                 on_step: Callable[[str], object]) -> str:
    """Nodes per pool and consumer, drawn as a step chart: from the groups' CloudWatch group metrics
    when every group has datapoints, else from the node lives in their scaling activities."""
    from gpufleet.automation import capacity_metrics
    from gpufleet.automation.capacity_history import capacity_series
    from gpufleet.automation.cli.charts import capacity_over_time
    from gpufleet.automation.usage import sources

    now = time.time()
    since = now - hours * 3600
    shown = {p.name for p in result.pools}
    on_step("reading the groups' CloudWatch metrics...")
    series, missing = capacity_metrics.read(fleet, access.client, since, now, pools=shown)
    source = f"CloudWatch {capacity_metrics.METRIC}"
    why = ""
    if series is None:
        _pools, nodes, _phases = sources.read(fleet, access, since, now=now, on_step=on_step)
        series = [s for s in capacity_series(nodes, since, now) if s.pool in shown]
        source, why = "the scaling activities", f" (no group metrics: {', '.join(missing)})" if missing else ""
    capacity_over_time(series, {p.name: p.count for p in result.pools}, since, now, path, source=source)
    return source + why


def with_sandbox_hint(error: AwsCallError) -> AwsCallError:
    """No credentials, none of the sandbox's in the environment, but a sandbox running: say how to use it."""
    if not error.message.startswith("no AWS credentials") or os.environ.get("AWS_ENDPOINT_URL"):
        return error
    sandbox = control.status(project.state_dir())
    if sandbox.state != "running":
        return error
    return AwsCallError(error.message, f'a sandbox is running at {sandbox.endpoint}: point gpufleet at it with '
                        f'eval "$(gpufleet sandbox env)"', operation=error.operation, service=error.service,
                        stack=error.stack)


def render(result: core.FleetStatus, wide: bool = False) -> None:
    # SPARES only where a pool keeps hot spares and MOVING only while a move is in flight; the AZ ID,
    # fixed with the pool (plan shows it), only with -o wide: so that every cell fits whole at 80
    # columns with both SPARES and MOVING, rather than fold inside a word.
    spares = wide or any(p.spares for p in result.pools)
    moving = wide or any(p.in_flight for p in result.pools)
    pools = table("pool", "type", *(["AZ ID"] if wide else []), "kind", "count", "consumers",
                  *(["spares"] if spares else []), "free", *(["moving"] if moving else []),
                  title=f"capacity pools ({result.source})", whole=("pool", "type"))
    for p in result.pools:
        consumers = ", ".join(f"{role} {n}" for role, n in sorted(p.consumers.items())) or "-"
        free = f"[red]{p.free}[/]" if p.free < 0 else str(p.free)
        pools.add_row(p.name, p.instance_type, *([p.az_id] if wide else []), p.kind, str(p.count), consumers,
                      *([str(p.spares)] if spares else []), free, *([str(p.in_flight)] if moving else []))
    console.print(pools)
    columns = ["stack", "node group", "pool", "desired", "live", "ready", "healthy", "min-max"]
    groups = table(*columns, *(["ASG"] if wide else []),
                   title="node groups (live: not leaving; ready: in service; healthy: in service and Healthy)")
    for g in result.node_groups:
        healthy = str(g.healthy) if g.healthy >= g.desired else f"[yellow]{g.healthy}[/]"
        name = g.name + (f" [red]({g.problem})[/]" if g.problem else "")
        groups.add_row(g.stack, name, g.pool, str(g.desired), str(g.live), str(g.in_service), healthy,
                       f"{g.min_nodes}-{g.max_nodes}", *([g.asg_name] if wide else []))
    console.print(groups)
    for m in result.moves:
        console.print(f"in flight: {m.op_id} {m.state}: {m.nodes} nodes of {m.pool} {m.from_role} -> {m.to_role}",
                      highlight=False)
    age = result.inventory
    console.print(f"[yellow]{age.summary}[/]" if age.stale else age.summary, highlight=False)
    for note in age.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)

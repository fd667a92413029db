"""`gpufleet plan`: render every stack offline and show resources, GPUs, capacity and cost."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from gpufleet.automation import plan as core
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.inventory import DEFAULT_PATH

if TYPE_CHECKING:
    from gpufleet.automation.drift import LiveDrift


@app.command("plan")
@handle_errors
def plan(
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="Only this stack (repeatable).")] = None,
    stacks_dir: Annotated[Path, typer.Option("--stacks-dir", help="Where the Pulumi.<stack>.yaml files are.")] = core.DEFAULT_STACKS_DIR,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any mandatory guardrail fails (CI).")] = False,
    live: Annotated[bool, typer.Option("--live", help="Also read the live fleet (through the inventory) and show "
                                       "where it has drifted from the stack files.")] = False,
    inventory: Annotated[Path, typer.Option("--inventory", "-i", help="Fleet inventory, for --live.")] = DEFAULT_PATH,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile, for --live.")] = None,
) -> None:
    """Offline: what each stack would create, the pools it uses, what it costs per hour, and the guardrails."""
    specs = core.load_specs(stacks_dir, stack or ())
    fleet = None
    if live:
        from gpufleet.automation.inventory import load_inventory

        fleet = load_inventory(inventory)  # a bad inventory fails before anything renders
    with err_console.status("rendering stacks under Pulumi mocks...") as status:
        result = core.plan_fleet(specs, on_stack=lambda s: status.update(f"rendering {s.name} ({s.source})"))
        if fleet is not None:
            from gpufleet.automation import drift
            from gpufleet.automation import status as live_status
            from gpufleet.automation.aws import AwsAccess

            status.update("reading the live fleet...")
            now = live_status.fleet_status(fleet, AwsAccess(fleet, operation="plan", profile=profile))
            result = dataclasses.replace(result, live=drift.compare(specs, fleet, now))
    if json_output:
        print_json(result)
    else:
        render_plan(result)
    if core.failing_findings(result, strict=strict):  # capacity errors always; guardrails with --strict
        raise typer.Exit(1)


def render_plan(result: core.FleetPlan) -> None:
    for s in result.stacks:
        console.rule(f"[bold]{s.name}[/]  {s.role}  account {s.account_id}  {s.region}  ({s.source})")
        types = Table("resource type", "count", title=f"{s.num_resources} resources", title_justify="left")
        for type_token, count in s.resources_by_type.items():
            types.add_row(type_token, str(count))
        console.print(types)
        if s.node_groups:
            groups = Table("node group", "pool", "instance type", "initial (min-max)", "GPUs", "EFA/node", "placement",
                           "reservation", title="GPU node groups (initial size: the rebalancer owns the live size)",
                           title_justify="left")
            for g in s.node_groups:
                groups.add_row(g.name, g.pool, g.instance_type, f"{g.initial_nodes} ({g.min_nodes}-{g.max_nodes})",
                               f"{g.gpus} x {g.gpu_model}", str(g.efa_interfaces), "yes" if g.placement_group else "no",
                               g.capacity_reservation_id or "open")
            console.print(groups)
        if s.clusters:
            clusters = Table("cluster", "kind", "API endpoint", "node groups", "add-ons", title="clusters",
                             title_justify="left")
            for c in s.clusters:
                clusters.add_row(c.name, c.kind, c.endpoint_access or "-", ", ".join(c.node_groups),
                                 ", ".join(c.add_ons) or "-")
            console.print(clusters)
        for st in s.storage:
            console.print(f"storage: {st.file_system} {st.deployment_type} {st.capacity_gib} GiB at "
                          f"{st.throughput_per_tib} MB/s/TiB <-> {st.data_repository_path} "
                          f"(import {','.join(st.import_events)}; export {','.join(st.export_events)})")
        costs = Table("cost item", "quantity", "unit price", "$/h", title=f"${s.cost_per_hour_usd:,.2f} per hour",
                      title_justify="left")
        for item in s.cost_items:
            costs.add_row(item.item, f"{item.quantity:g}", f"{item.unit_price_usd:g}/{item.unit}", f"{item.usd_per_hour:,.2f}")
        console.print(costs)
    if result.pools:
        pools = Table("pool", "instance type", "AZ ID", "kind", "count", "consumers", "free", "window (UTC)",
                      title="capacity ledger (initial sizes)", title_justify="left")
        for p in result.pools:
            pools.add_row(p.name, p.instance_type, p.az_id, p.kind, str(p.count),
                          ", ".join(f"{role} {n}" for role, n in p.consumers.items()) or "-", str(p.free),
                          f"{p.start_time} - {p.end_time}" if p.start_time else "-")
        console.print(pools)
    findings = Table("severity", "rule", "stack", "resource", "message", title=f"{len(result.findings)} findings",
                     title_justify="left")
    for f in result.findings:
        findings.add_row(f"[red]{f.severity}[/]" if f.severity == "error" else f.severity, f.rule, f.stack,
                         f.resource, f.message)
    console.print(findings)
    t = result.totals
    console.print(f"[bold]total:[/] {t['stacks']} stacks, {t['resources']} resources, {t['initial_nodes']} nodes "
                  f"initially, {t['gpus']} GPUs, ${t['cost_per_hour_usd']:,.2f} per hour")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    if result.live is not None:
        render_live(result.live)


def render_live(live: LiveDrift) -> None:
    title = (f"live fleet ({live.source}): {len(live.drifted)} drifted from the stack files"
             if live.drifted else f"live fleet ({live.source}): no drift from the stack files")
    table = Table("", "stack", "resource", "field", "stack file", "live", "message", title=title, title_justify="left")
    for d in live.differences:
        table.add_row("[red]drift[/]" if d.drift else "[dim]not drift[/]", d.stack, d.resource, d.field,
                      "-" if d.declared is None else str(d.declared), "-" if d.live is None else str(d.live), d.message)
    console.print(table)
    console.print(live.inventory.summary, highlight=False, soft_wrap=True)
    for note in live.inventory.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False, soft_wrap=True)

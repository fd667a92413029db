"""`gpufleet plan`: render every stack offline and show resources, GPUs, capacity and cost."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from gpufleet.automation import plan as core
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, StacksDir
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.cli.tables import Output, OutputFormat, print_table, table

if TYPE_CHECKING:
    from gpufleet.automation.drift import LiveDrift


@app.command("plan")
@handle_errors
def plan(
    stacks_dir: StacksDir,
    inventory: Inventory,
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="Only this stack (repeatable).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any mandatory guardrail fails (CI).")] = False,
    live: Annotated[bool, typer.Option("--live", help="Also read the live fleet (through the inventory) and show "
                                       "where it has drifted from the stack files.")] = False,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile, for --live.")] = None,
    resources: Annotated[bool, typer.Option("--resources", help="Also each stack's resources by type and its "
                                            "cost breakdown.")] = False,
    output: Output = OutputFormat.table,
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
        print_json(result, versioned=True)
    else:
        render_plan(result, resources=resources, wide=output is OutputFormat.wide)
    if core.failing_findings(result, strict=strict):  # capacity errors always; guardrails with --strict
        raise typer.Exit(1)


def render_plan(result: core.FleetPlan, resources: bool = False, wide: bool = False) -> None:
    t = result.totals
    console.print(f"[bold]plan:[/] {t['stacks']} stacks, {t['resources']} resources, {t['initial_nodes']} nodes "
                  f"initially, {t['gpus']} GPUs, ${t['cost_per_hour_usd']:,.2f} per hour", highlight=False)
    stacks = table("stack", "role", "account", "region", "resources", "GPUs", "$/h", *(["source"] if wide else []))
    for s in result.stacks:
        stacks.add_row(s.name, s.role, s.account_id, s.region, str(s.num_resources),
                       str(sum(g.gpus for g in s.node_groups)), f"{s.cost_per_hour_usd:,.2f}",
                       *([str(s.source)] if wide else []))
    print_table(console, stacks, wide=wide)
    groups = table("stack", "node group", "pool", "type", "nodes", "GPUs", "EFA", "PG",
                   *(["reservation"] if wide else []),
                   title="GPU node groups (nodes: initial (min-max); the rebalancer owns the live size)")
    for s in result.stacks:
        for g in s.node_groups:
            groups.add_row(s.name, g.name, g.pool, g.instance_type, f"{g.initial_nodes} ({g.min_nodes}-{g.max_nodes})",
                           f"{g.gpus} x {g.gpu_model}", str(g.efa_interfaces), "yes" if g.placement_group else "no",
                           *([g.capacity_reservation_id or "open"] if wide else []))
    if groups.row_count:
        print_table(console, groups, wide=wide)
    clusters = table("stack", "cluster", "kind", "API endpoint", "node groups", "add-ons", title="clusters")
    for s in result.stacks:
        for c in s.clusters:
            add_ons = (", ".join(c.add_ons) or "-") if wide else str(len(c.add_ons))
            clusters.add_row(s.name, c.name, c.kind, c.endpoint_access or "-", ", ".join(c.node_groups), add_ons)
    if clusters.row_count:
        print_table(console, clusters, wide=wide)
    for s in result.stacks:
        if s.ram_sharing:
            console.print(f"RAM sharing ({s.name}): {s.ram_sharing}", highlight=False)
        for st in s.storage:
            console.print(f"storage ({s.name}): {st.file_system} {st.deployment_type} {st.capacity_gib} GiB at "
                          f"{st.throughput_per_tib} MB/s/TiB <-> {st.data_repository_path} "
                          f"(import {','.join(st.import_events)}; export {','.join(st.export_events)})",
                          highlight=False)
    if result.pools:
        windows = wide or any(p.start_time for p in result.pools)  # Capacity Blocks
        spares = wide or any(p.spares for p in result.pools)  # a column only where a pool keeps hot spares
        pools = table("pool", "type", "AZ ID", "kind", "count", "consumers", *(["spares"] if spares else []), "free",
                      *(["window (UTC)"] if windows else []), title="capacity ledger (initial sizes)")
        for p in result.pools:
            pools.add_row(p.name, p.instance_type, p.az_id, p.kind, str(p.count),
                          ", ".join(f"{role} {n}" for role, n in p.consumers.items()) or "-",
                          *([str(p.spares)] if spares else []), str(p.free),
                          *([f"{p.start_time} - {p.end_time}" if p.start_time else "-"] if windows else []))
        print_table(console, pools, wide=wide)
    if result.findings:  # a line naming the finding, whole, then its message folded under it
        console.print(f"[bold]{len(result.findings)} findings[/]", highlight=False)
        for f in result.findings:
            severity = f"[red]{f.severity}[/]" if f.severity == "error" else f.severity
            console.print(f"{severity}  {escape(f.rule)}  {escape(f.stack)}/{escape(f.resource)}", highlight=False)
            console.print(Padding(Text(f.message), (0, 0, 0, 2)), highlight=False)
    else:
        console.print("guardrails: no findings")
    if resources:
        render_resources(result)
    else:
        console.print("[dim]resources by type and the cost breakdown: --resources[/]", highlight=False)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if result.live is not None:
        render_live(result.live)


def render_resources(result: core.FleetPlan) -> None:
    for s in result.stacks:
        types = table("resource type", "count", title=f"{s.name}: {s.num_resources} resources")
        for type_token, count in s.resources_by_type.items():
            types.add_row(type_token, str(count))
        console.print(types)
        costs = table("cost item", "quantity", "unit price", "$/h", title=f"{s.name}: ${s.cost_per_hour_usd:,.2f} per hour")
        for item in s.cost_items:
            costs.add_row(item.item, f"{item.quantity:g}", f"{item.unit_price_usd:g}/{item.unit}", f"{item.usd_per_hour:,.2f}")
        console.print(costs)


def render_live(live: LiveDrift) -> None:
    """A line per difference naming it whole (drift or not, stack/resource, field, stack file ->
    live), its message folded under it, as the findings are."""
    title = (f"live fleet ({live.source}): {len(live.drifted)} drifted from the stack files"
             if live.drifted else f"live fleet ({live.source}): no drift from the stack files")
    console.print(Text(title, style="bold"), highlight=False)
    for d in live.differences:
        kind = Text("drift    ", style="red") if d.drift else Text("not drift", style="dim")
        declared, now = "-" if d.declared is None else str(d.declared), "-" if d.live is None else str(d.live)
        console.print(Text.assemble(kind, f"  {d.stack}/{d.resource}  {d.field}: stack file {declared}, live {now}"),
                      highlight=False)
        console.print(Padding(Text(d.message), (0, 0, 0, 2)), highlight=False)
    console.print(live.inventory.summary, highlight=False)
    for note in live.inventory.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)

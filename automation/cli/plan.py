"""`gpufleet plan`: render every stack offline and show resources, GPUs, capacity and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.automation import plan as core
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json


@app.command("plan")
@handle_errors
def plan(
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="Only this stack (repeatable).")] = None,
    stacks_dir: Annotated[Path, typer.Option("--stacks-dir", help="Where the Pulumi.<stack>.yaml files are.")] = core.DEFAULT_STACKS_DIR,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any mandatory guardrail fails (CI).")] = False,
) -> None:
    """Offline: what each stack would create, the pools it uses, what it costs per hour, and the guardrails."""
    specs = core.load_specs(stacks_dir, stack or ())
    with err_console.status("rendering stacks under Pulumi mocks...") as status:
        result = core.plan_fleet(specs, on_stack=lambda s: status.update(f"rendering {s.name} ({s.source})"))
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
            groups = Table("node group", "pool", "instance type", "nodes", "GPUs", "EFA/node", "placement",
                           "reservation", title="GPU node groups (nodes: initial, min-max)", title_justify="left")
            for g in s.node_groups:
                groups.add_row(g.name, g.pool, g.instance_type, f"{g.num_nodes} ({g.min_nodes}-{g.max_nodes})",
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
        pools = Table("pool", "instance type", "AZ ID", "kind", "count", "consumers", "free", title="capacity ledger",
                      title_justify="left")
        for p in result.pools:
            pools.add_row(p.name, p.instance_type, p.az_id, p.kind, str(p.count),
                          ", ".join(f"{role} {n}" for role, n in p.consumers.items()) or "-", str(p.free))
        console.print(pools)
    findings = Table("severity", "rule", "stack", "resource", "message", title=f"{len(result.findings)} findings",
                     title_justify="left")
    for f in result.findings:
        findings.add_row(f"[red]{f.severity}[/]" if f.severity == "error" else f.severity, f.rule, f.stack,
                         f.resource, f.message)
    console.print(findings)
    t = result.totals
    console.print(f"[bold]total:[/] {t['stacks']} stacks, {t['resources']} resources, {t['nodes']} nodes, "
                  f"{t['gpus']} GPUs, ${t['cost_per_hour_usd']:,.2f} per hour")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")

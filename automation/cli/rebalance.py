"""`gpufleet rebalance`: move reserved GPU nodes between consumer accounts, journaled and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.inventory import DEFAULT_PATH
from gpufleet.automation.rebalance import service
from gpufleet.automation.rebalance.engine import Progress


@app.command("rebalance")
@handle_errors
def rebalance(
    from_role: Annotated[str | None, typer.Option("--from", help="Role giving nodes (training, inference).")] = None,
    to_role: Annotated[str | None, typer.Option("--to", help="Role receiving them.")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", help="How many nodes move.", min=1)] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Pool to move within (when the roles share several).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only (the default without --yes).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do it.")] = False,
    resume: Annotated[str | None, typer.Option("--resume", metavar="OP_ID", help="Continue an interrupted move.")] = None,
    cancel: Annotated[str | None, typer.Option("--cancel", metavar="OP_ID", help="Roll an unfinished move back.")] = None,
    probe: Annotated[str | None, typer.Option("--probe", help="Health gate probe: ssm (on the instances; the default), local "
                                              "(this host stands in for every node, as in the sandbox), none (unchecked). "
                                              "--resume/--cancel reuse the move's own.")] = None,
    gate_tiers: Annotated[str | None, typer.Option("--gate-tiers", help="Health tiers new nodes must pass, comma-separated "
                                                   "(default quick).")] = None,
    lease_seconds: Annotated[float | None, typer.Option("--lease-seconds", help="Pool lease without a heartbeat "
                                                        "(default 120): a stopped process is taken over after it.")] = None,
    inventory: Annotated[Path, typer.Option("--inventory", help="Fleet inventory (stack outputs).")] = DEFAULT_PATH,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Checkpoint and drain nodes in one account, release them, acquire them in the other, health-gate them."""
    args = service.RebalanceArgs(from_role=from_role, to_role=to_role, nodes=nodes, pool=pool,
                                 execute=yes and not dry_run, resume=resume, cancel=cancel, inventory=inventory,
                                 probe=probe, lease_s=lease_seconds, gate_tiers=tuple(t for t in gate_tiers.split(",") if t) if gate_tiers else None)
    current: list[str] = []

    def show(p: Progress) -> None:
        current[:] = [p.op_id]
        err_console.print(f"[bold]{p.state:<13}[/] {escape(p.message)}  [dim]{escape(p.op_id)}[/]", highlight=False,
                          soft_wrap=True)

    try:
        result = service.rebalance(args, on_progress=show)
    except KeyboardInterrupt:
        op = current[0] if current else "OP_ID"
        err_console.print(f"interrupted. The journal holds {op}: continue with `gpufleet rebalance --resume {op}`, "
                          f"or roll it back with `gpufleet rebalance --cancel {op}`.", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if json_output:
        print_json(result)
    else:
        render(result)


def render(result: service.RebalanceResult) -> None:
    plan = result.plan
    title = "plan (dry run: add --yes to do it)" if result.op_id is None else f"{result.op_id}: {result.state}"
    console.print(f"[bold]{escape(title)}[/]  " + escape(f"move {plan.nodes} x {plan.instance_type} of pool {plan.pool}: "
                  f"{plan.source_stack}/{plan.source_group} -> {plan.dest_stack}/{plan.dest_group}"))
    victims = Table("victim", "busy", "why", title="nodes to release" if result.op_id is None else "released",
                    title_justify="left")
    for v in plan.victims:
        victims.add_row(Text(v.instance_id), "yes" if v.busy else "no", Text(v.reason))
    console.print(victims)
    if result.acquired:
        console.print(f"acquired in {plan.dest_stack}/{plan.dest_group}: {', '.join(result.acquired)}")
    ledger = Table("pool " + plan.pool, "before", "after", title=f"ledger ({plan.pool_count} reserved)", title_justify="left")
    for role in plan.before:
        ledger.add_row(role, str(plan.before[role]), str(plan.after[role]))
    ledger.add_row("free", str(plan.free_before), str(plan.free_after))
    console.print(ledger)
    if result.inventory is not None:
        age = result.inventory
        console.print(Text(age.summary, style="yellow" if age.stale else ""), highlight=False, soft_wrap=True)
        for note in age.notes:
            console.print(Text(f"note: {note}", style="dim"), highlight=False, soft_wrap=True)

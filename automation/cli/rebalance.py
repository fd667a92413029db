"""`gpufleet rebalance`: move reserved GPU nodes between consumer accounts, journaled and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, Profile, Yes
from gpufleet.automation.cli.options import tiers as parse_tiers
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.progress import ProgressView, duration
from gpufleet.automation.cli.tables import Output, OutputFormat, table
from gpufleet.automation.group_ref import NodeGroupRef
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance import history, service

rebalance_app = typer.Typer(help="Move reserved GPU nodes between consumer accounts; list and show past moves.",
                            context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(rebalance_app, name="rebalance")


@rebalance_app.callback(invoke_without_command=True)
@handle_errors
def rebalance(
    ctx: typer.Context,
    inventory: Inventory,
    from_role: Annotated[str | None, typer.Option("--from", metavar="ROLE", help="Role giving nodes (training, inference; released: the pool's free reserved slots).")] = None,
    to_role: Annotated[str | None, typer.Option("--to", metavar="ROLE", help="Role receiving them (released: back to the pool's reservation).")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", metavar="N", help="How many nodes move.", min=1)] = None,
    pool: Annotated[str | None, typer.Option("--pool", metavar="POOL", help="Pool to move within (when the roles share several).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only (the default without --yes).")] = False,
    yes: Yes = False,
    resume: Annotated[str | None, typer.Option("--resume", metavar="OP_ID", help="Continue an interrupted move.")] = None,
    cancel: Annotated[str | None, typer.Option("--cancel", metavar="OP_ID", help="Roll an unfinished move back.")] = None,
    probe: Annotated[str | None, typer.Option("--probe", metavar="ssm|local|none", help="Health gate probe: ssm (on the instances; the default), local "
                                              "(this host stands in for every node, as in the sandbox), none (unchecked). "
                                              "--resume/--cancel reuse the move's own.")] = None,
    tiers: Annotated[str | None, typer.Option("--tiers", metavar="quick,performance,deep",
                                              help="Health tiers new nodes must pass (default quick).")] = None,
    profile: Profile = None,
    lease_seconds: Annotated[float | None, typer.Option("--lease-seconds", metavar="SECONDS", help="Pool lease "
                                                        "without a heartbeat (default 120): a stopped process is "
                                                        "taken over after it.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Checkpoint and drain nodes in one account, release them, acquire them in the other, health-gate them.

    `gpufleet rebalance ls` lists past moves; `gpufleet rebalance show OP_ID` shows one."""
    if ctx.invoked_subcommand is not None:
        return
    args = service.RebalanceArgs(from_role=from_role, to_role=to_role, nodes=nodes, pool=pool,
                                 execute=yes and not dry_run, resume=resume, cancel=cancel, inventory=inventory,
                                 probe=probe, profile=profile, lease_s=lease_seconds,
                                 gate_tiers=tuple(t.value for t in parse_tiers(tiers, ())) if tiers else None)
    view = ProgressView(err_console)
    try:
        result = service.rebalance(args, on_progress=view)
    except KeyboardInterrupt:
        view.close()
        op = view.current or "OP_ID"
        err_console.print(f"interrupted. The journal holds {op}: continue with `gpufleet rebalance --resume {op}`, "
                          f"or roll it back with `gpufleet rebalance --cancel {op}`.", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        view.close()
    if json_output:
        print_json(result, versioned=True)
    else:
        render(result)


def render(result: service.RebalanceResult) -> None:
    plan = result.plan
    title = "plan (dry run: add --yes to do it)" if result.op_id is None else f"{result.op_id}: {result.state}"
    as_dict = plan.to_dict()
    source, dest = NodeGroupRef.of_plan(as_dict, "source"), NodeGroupRef.of_plan(as_dict, "dest")
    console.print(f"[bold]{escape(title)}[/]  " + escape(f"move {plan.nodes} x {plan.instance_type} of pool {plan.pool}: "
                  f"{source} -> {dest}"), highlight=False)
    victims = table("instance", "busy", "why", title="nodes to release" if result.op_id is None else "released")
    for v in plan.victims:
        victims.add_row(Text(v.instance_id), "yes" if v.busy else "no", Text(v.reason))
    console.print(victims if plan.victims else "nodes to release: none (they come from the pool's free slots)")
    if plan.to_role == "released":
        console.print(f"nothing is acquired: the slots go back to pool {plan.pool}'s reservation", highlight=False)
    if result.acquired:
        console.print(f"acquired in {plan.dest_stack}/{plan.dest_group}: {', '.join(result.acquired)}")
    ledger = table("consumer", "before", "after", title=f"ledger of pool {plan.pool} ({plan.pool_count} reserved)")
    for role in plan.before:
        ledger.add_row(role, str(plan.before[role]), str(plan.after[role]))
    ledger.add_row("free", str(plan.free_before), str(plan.free_after))
    console.print(ledger)
    if result.inventory is not None:
        age = result.inventory
        console.print(Text(age.summary, style="yellow" if age.stale else ""), highlight=False)
        for note in age.notes:
            console.print(Text(f"note: {note}", style="dim"), highlight=False)


@rebalance_app.command("ls")
@handle_errors
def ls(
    inventory: Inventory,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many, newest first.")] = 20,
    profile: Profile = None,
    output: Output = OutputFormat.table,
    json_output: Annotated[bool, typer.Option("--json", help="Print the moves as JSON.")] = False,
) -> None:
    """Recent moves from the journal: id, state, started, duration, from -> to, pool, nodes."""
    moves = history.list_moves(history.journal_of(load_inventory(inventory), profile), limit=limit)
    if json_output:
        print_json({"moves": moves}, versioned=True)
        return
    wide = output is OutputFormat.wide
    # The id begins with the UTC start time; -o wide adds it as ISO 8601.
    listing = table("id", "state", "duration", "from -> to", "pool", "nodes", *(["started"] if wide else []),
                    whole=("id", "pool"))
    for m in moves:
        listing.add_row(m.op_id, m.state, duration(m.duration_s) + ("" if m.finished else "+"),
                        f"{m.from_role} -> {m.to_role}", m.pool, str(m.nodes), *([m.started_at or "-"] if wide else []))
    console.print(listing if moves else "no moves in the journal")


@rebalance_app.command("show")
@handle_errors
def show(
    inventory: Inventory,
    op_id: Annotated[str, typer.Argument(metavar="OP_ID", help="The move (see `gpufleet rebalance ls`).")],
    profile: Profile = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="Also draw the state timeline (a Gantt) to this "
                                               "file (.png, .svg, .pdf).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the move as JSON.")] = False,
) -> None:
    """One move: its state timeline with durations, the victims and why, what was acquired, the gate."""
    detail = history.show_move(history.journal_of(load_inventory(inventory), profile), op_id)
    if chart is not None:
        from gpufleet.automation.cli.charts import move_timeline

        move_timeline(detail, chart)
        say(f"timeline drawn to {chart}", fold=False)
    if json_output:
        print_json(detail, versioned=True)
        return
    m = detail.move
    console.print(f"[bold]{m.op_id}[/] {m.state}: {m.nodes} x {detail.instance_type} of pool {m.pool}, "
                  f"{detail.source} -> {detail.dest}", highlight=False)
    timeline = table("state", "entered", "for", title=f"timeline ({detail.events} journal events)")
    for span in detail.timeline:
        timeline.add_row(span.state, span.entered_at, duration(span.duration_s))
    console.print(timeline)
    victims = table("instance", "busy", "why", title="released", whole=("instance",))
    for v in detail.victims:
        victims.add_row(escape(v["instance_id"]), "yes" if v["busy"] else "no", escape(v["reason"]))
    console.print(victims if detail.victims else "released: none (the nodes came from the pool's free slots)"
                  if m.from_role == "released" else "released: none")
    console.print(f"acquired: {', '.join(detail.acquired) or 'none'}", highlight=False)
    for g in detail.gates:
        failed = "; ".join(f"{node}: {why}" for node, why in g.failed.items())
        console.print(Text(f"health gate at {g.at}: {g.summary}" + (f" (failed: {failed})" if failed else "")),
                      highlight=False)
    if detail.rollback_reason:
        console.print(Text(f"rolled back: {detail.rollback_reason}", style="yellow"), highlight=False)


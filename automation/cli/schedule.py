"""`gpufleet schedule show|simulate|trace|reconcile|run|lend-init`: the capacity schedule, planned, simulated and
carried out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from gpufleet.automation import figures
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory, Profile, StacksDir, Yes
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.tables import table
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.plan import load_specs
from gpufleet.automation.schedule import show as show_core
from gpufleet.automation.schedule import study
from gpufleet.automation.schedule import trace as traces
from gpufleet.automation.schedule.model import deadlines_of
from gpufleet.automation.schedule.policies import Policy
from gpufleet.infra.errors import BadInputError

schedule_app = typer.Typer(help="Capacity that follows demand: the planned split, simulations, synthetic traces.",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

Json = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
Chart = Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Also draw a chart into this file (.png, .svg or .pdf).")]


def _instant(value: str | None, flag: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadInputError(f"{flag} {value!r}: not an ISO 8601 time", "e.g. 2026-03-02T09:00:00-06:00") from None
    if at.tzinfo is None:
        raise BadInputError(f"{flag} {value!r}: needs a UTC offset", "e.g. 2026-03-02T15:00:00+00:00")
    return at


@schedule_app.command("show")
@handle_errors
def show(
    stacks_dir: StacksDir,
    hours: Annotated[int, typer.Option("--hours", help="How far ahead.", min=1, max=24 * 31)] = 48,
    start: Annotated[str | None, typer.Option("--from", help="From this instant (ISO 8601 with offset; default now).")] = None,
    inventory: Annotated[Path | None, typer.Option("--inventory", help="Fleet inventory: Capacity Blocks' end times "
                                                   "(windows they cannot serve are reported).")] = None,
    chart: Chart = None,
    json_output: Json = False,
) -> None:
    """The split each scheduled pool is planned to have, hour by hour (moves start one lead time early)."""
    if chart is not None:
        figures.check_path(chart)
    deadlines = deadlines_of(load_inventory(inventory).pools) if inventory is not None else {}
    result = show_core.show(load_specs(stacks_dir), _instant(start, "--from") or dt.datetime.now(dt.UTC), hours,
                            deadlines)
    if chart is not None:
        from gpufleet.automation.schedule import chart as charts

        charts.save(charts.plan_figure(result), chart)
    if json_output:
        print_json(result)
        return
    split = table("pool", "from (UTC)", "to (UTC)", "inference", "training", "serving",
                  title=f"planned split ({result.source})", whole=("pool",))
    for s in result.segments:
        split.add_row(s.pool, f"{s.start:%a %Y-%m-%d %H:%M}", f"{s.end:%a %H:%M}", str(s.inference), str(s.training),
                      str(s.serving))
    console.print(split)
    for finding in result.findings:
        say(str(finding), label="cannot be served: ", style="yellow")


@schedule_app.command("simulate")
@handle_errors
def simulate(
    stacks_dir: StacksDir,
    trace_file: Annotated[Path, typer.Option("--trace", help="CSV time,demand (inference nodes), or time,rps with --per-node.")],
    policy: Annotated[list[Policy] | None, typer.Option("--policy", help="Repeatable; default: all.")] = None,
    per_node: Annotated[float | None, typer.Option("--per-node", help="Requests per second one node serves.", min=1e-9)] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="The scheduled pool (default: the first).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the lead-time draws.")] = 0,
    block_end: Annotated[str | None, typer.Option("--block-end", help="The pool is a Capacity Block ending then "
                                                  "(EC2 terminates from 30 minutes before).")] = None,
    inference_lead: Annotated[str, typer.Option("--inference-lead", help="Minutes from drained to serving: LOW,MODE,HIGH "
                                                "(triangular).")] = "11,13.5,18",
    training_lead: Annotated[str, typer.Option("--training-lead", help="Minutes from released to training.")] = "3,4,6",
    lost_minutes: Annotated[float, typer.Option("--lost-minutes", help="Training node-minutes lost per preemption.",
                                                min=0)] = 10.0,
    chart: Chart = None,
    json_output: Json = False,
) -> None:
    """Minute by minute over the trace: every policy, beside the optimum under perfect foresight."""
    if chart is not None:
        figures.check_path(chart)
    demand = traces.read_trace(trace_file, per_node)
    setup = study.setup_from_stacks(load_specs(stacks_dir), pool, seed=seed, block_end=_instant(block_end, "--block-end"),
                                    inference_lead=study.lead_time(inference_lead, "--inference-lead"),
                                    training_lead=study.lead_time(training_lead, "--training-lead"),
                                    lost_minutes_per_preemption=lost_minutes)
    with err_console.status(f"simulating {len(demand.demand)} minutes..."):
        result = study.run_study(demand, setup, policy or list(Policy), keep_series=chart is not None)
    if chart is not None:
        from gpufleet.automation.schedule import chart as charts

        charts.save(charts.simulation_figure(demand, result.outcomes), chart)
    if json_output:
        print_json(result)
        return
    outcomes = table("policy", "served", "unserved node-min", "training GPU-h", "lost GPU-h", "moves", "idle GPU-h",
                     "training vs oracle", title=f"pool {result.pool}, {result.minutes / 1440:.1f} days",
                     whole=("policy", "served"))
    for o in result.outcomes:
        ratio = "" if o.training_ratio_to_oracle is None else f"{o.training_ratio_to_oracle:.1%}"
        outcomes.add_row(o.policy, f"{o.served_fraction:.4%}", f"{o.unserved_node_minutes:.1f}", f"{o.training_gpu_hours:.0f}",
                      f"{o.lost_training_gpu_hours:.0f}", str(o.moves), f"{o.idle_reserved_gpu_hours:.0f}", ratio)
    console.print(outcomes)


@schedule_app.command("trace")
@handle_errors
def trace(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (time,demand).")],
    kind: Annotated[traces.TraceKind, typer.Option("--kind", help="steady, holiday (a holiday week) or surge (3x one day).")] = traces.TraceKind.STEADY,
    days: Annotated[int, typer.Option("--days", help="Days of trace.", min=1, max=366)] = 14,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the noise.")] = 1,
    window_nodes: Annotated[float, typer.Option("--window-nodes", help="Mean nodes needed in the window.", min=0)] = 4.0,
    outside_nodes: Annotated[float, typer.Option("--outside-nodes", help="Mean nodes needed outside it.", min=0)] = 0.6,
    json_output: Json = False,
) -> None:
    """A seeded synthetic demand trace: weekday windows 09:00-15:00 America/Chicago, noise, a holiday or a surge."""
    shape = traces.TraceShape(window_nodes=window_nodes, outside_nodes=outside_nodes)
    result = traces.synthesize(kind, days=days, seed=seed, shape=shape)
    traces.write_trace(result, out)
    summary = {"path": out, "kind": kind, "days": days, "seed": seed, "minutes": len(result.demand),
               "start": result.start.isoformat(), "peak_nodes": max(result.demand)}
    if json_output:
        print_json(summary)
    else:
        console.print(f"wrote {out}: {len(result.demand)} minutes of {kind} demand from {result.start:%Y-%m-%d %H:%M} UTC, "
                      f"peak {max(result.demand):.2f} nodes")


Probe = Annotated[str | None, typer.Option("--probe", help="Health gate probe for new nodes: orchestrator, ssm, local, "
                                           "none (default: the inference stack's healthGate.probe).")]
Signals = Annotated[str | None, typer.Option("--signals", help="A Prometheus query API to read serving signals from "
                                             "(default: the platform's Amazon Managed Prometheus, SigV4).")]


def _reconciler(inventory: Path, stacks_dir: Path, probe: str | None, signals: str | None):  # noqa: ANN202
    from gpufleet.automation.schedule import runner

    return runner.make_reconciler(inventory, load_specs(stacks_dir), probe=probe, signals_url=signals)


def _print_pass(result, json_output: bool) -> None:  # noqa: ANN001
    if json_output:
        print_json(result)
        return
    moves = table("pool", "move", "nodes", "state", "note", title=f"pass at {result.now} ({result.seconds:.2f} s)",
                  whole=("pool",))
    for kind, reports in (("advanced", result.advanced), ("started", result.started)):
        for r in reports:
            moves.add_row(r.pool, f"{kind} {r.op_id or '-'}: {r.from_role} -> {r.to_role}", str(r.nodes), r.state, r.note)
    for t in result.targets:
        console.print(Text(f"pool {t['pool']}: target inference {t['inference']}, training {t['training']} "
                           f"({t['reason']})"), highlight=False)
    if moves.row_count:
        console.print(moves)
    for finding in result.findings:
        say(str(finding), label="note: ", style="yellow")


@schedule_app.command("reconcile")
@handle_errors
def reconcile(
    inventory: Inventory,
    stacks_dir: StacksDir,
    at: Annotated[str | None, typer.Option("--at", help="Decide for this instant (ISO 8601 with offset; default now).")] = None,
    probe: Probe = None,
    signals: Signals = None,
    json_output: Json = False,
) -> None:
    """One idempotent pass: read the fleet, the journal and the signals, decide, start and advance moves."""
    now = _instant(at, "--at")
    _print_pass(_reconciler(inventory, stacks_dir, probe, signals).once(now), json_output)


@schedule_app.command("run")
@handle_errors
def run(
    inventory: Inventory,
    stacks_dir: StacksDir,
    passes: Annotated[int, typer.Option("--passes", help="At most this many passes.", min=1, max=100_000)] = 1440,
    until: Annotated[str | None, typer.Option("--until", help="Stop when the (simulated) clock reaches this instant.")] = None,
    speed: Annotated[float, typer.Option("--speed", help="Simulated seconds per wall second (the sandbox's "
                                         "compressed day: 60).", min=0.001)] = 1.0,
    start: Annotated[str | None, typer.Option("--from", help="The simulated clock starts here (default now).")] = None,
    every: Annotated[float, typer.Option("--every", help="Seconds of the (simulated) clock between passes.",
                                         min=1, max=3600)] = 60.0,
    probe: Probe = None,
    signals: Signals = None,
    json_output: Json = False,
) -> None:
    """The reconcile pass in a loop, one a (simulated) minute, bounded by --passes and --until."""
    from gpufleet.automation.schedule import runner

    reconciler = _reconciler(inventory, stacks_dir, probe, signals)
    results = runner.run(reconciler, passes=passes, until=_instant(until, "--until"), speed=speed,
                         start=_instant(start, "--from"), interval_s=every,
                         on_pass=None if json_output else (lambda r: _print_pass(r, False)))
    if json_output:
        print_json({"passes": results})


@schedule_app.command("lend-init")
@handle_errors
def lend_init(
    inventory: Inventory,
    stacks_dir: StacksDir,
    pool: Annotated[str, typer.Option("--pool", metavar="POOL", help="The pool whose schedule lends (lend: maxNodes).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be made only (the default without --yes).")] = False,
    yes: Yes = False,
    profile: Profile = None,
    json_output: Json = False,
) -> None:
    """The pool's first interruptible allocation (one slot lent, kept at zero), for training's lent group to target.

    Prints the `lentReservationId: cr-...` line for the training stack file; a second run changes nothing."""
    from gpufleet.automation.aws import AwsAccess
    from gpufleet.automation.rebalance.journal import Journal
    from gpufleet.automation.rebalance.service import cached_clients
    from gpufleet.automation.schedule import lend_init as core

    fleet = load_inventory(inventory)
    target = core.check(fleet, str(inventory), load_specs(stacks_dir), pool)
    client = cached_clients(AwsAccess(fleet, operation="schedule lend-init", profile=profile))
    execute = yes and not dry_run
    journal = Journal(client(fleet.platform_stack, "dynamodb"), fleet.journal_table) if execute else None
    result = core.lend_init(target, fleet, client(fleet.platform_stack, "ec2"), journal, execute=execute)
    if json_output:
        print_json(result)
        return
    _print_lend_init(result)


def _print_lend_init(result) -> None:  # noqa: ANN001
    what = {"created": "created", "finished": "kept at zero (a first run had stopped halfway)",
            "exists": "exists: nothing changed", "would-create": "would be created (dry run: add --yes to do it)",
            "would-finish": "would be kept at zero (dry run: add --yes to do it)"}[result.action]
    name = result.lent_id or "an interruptible reservation"
    console.print(Text(f"pool {result.pool}: {name} lent from {result.source_id} {what}"), highlight=False)
    if result.lent_id:
        console.print(Text(f"lent now {result.lent} ({result.status}), kept at zero between lends"
                           + (f"; journaled as {result.op_id}" if result.op_id else "")), highlight=False)
    if result.line is None:
        return
    if result.group and result.group_lent_id == result.lent_id:
        console.print(Text(f"{result.stack_file}: node group {result.group} already names it"), highlight=False)
        return
    where = (f"in its lent node group {result.group}, instead of {result.group_lent_id}" if result.group
             else f"under a new training node group of pool {result.pool} (initialNodes: 0, minNodes: 0, "
                  f"maxNodes at most {result.max_nodes})")
    console.print(Text(f"add to {result.stack_file}, {where}:"), highlight=False)
    console.print(Text(f"    {result.line}"), highlight=False, soft_wrap=True)

"""`gpufleet heal` (one pass, or --loop), `gpufleet heal replace NODE`: the healer on Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json
from gpufleet.automation.cli.tables import table
from gpufleet.automation.heal import service as core
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.inventory import DEFAULT_PATH

heal_app = typer.Typer(help="Heal the Slurm-run node groups: leave, reboot or replace each faulty node.",
                       invoke_without_command=True)
app.add_typer(heal_app, name="heal")

Inventory = Annotated[Path, typer.Option("--inventory", help="Fleet inventory (stack outputs).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Decide and report; change nothing.")]
Probe = Annotated[str, typer.Option("--probe", help="How the gate reaches a newcomer: ssm, or local (this host).")]
Tiers = Annotated[str, typer.Option("--tiers", help="Health tiers a newcomer must pass (comma-separated).")]
PerGroup = Annotated[int, typer.Option("--per-group", help="Replacements per Auto Scaling group per hour.")]
PerPool = Annotated[int, typer.Option("--per-pool", help="Replacements per pool per hour.")]


def _pass(inventory: Path, dry_run: bool, probe: str, tiers: str, per_group: int, per_pool: int) -> core.HealReport:
    from gpufleet.automation.health.replace import default_probes
    from gpufleet.automation.inventory import load_inventory
    from gpufleet.automation.slurm_client import SlurmClient

    args = core.HealArgs(inventory=inventory, dry_run=dry_run, probe=probe,
                         tiers=tuple(t for t in tiers.split(",") if t),
                         budget=HealBudget(per_group_per_hour=per_group, per_pool_per_hour=per_pool))
    probes = default_probes(probe, load_inventory(inventory))
    return core.heal_pass(args, clients=core.default_clients(inventory), slurm=SlurmClient(),
                          probes=probes,
                          progress=lambda m: err_console.print(f"[dim]{m}[/]", highlight=False))


def _show(report: core.HealReport, json_output: bool) -> None:
    if json_output:
        print_json(report.to_dict())
        return
    decisions = table("node", "instance", "group", "action", "wanted", "reason",
                      title="heal" + (" (dry run)" if report.dry_run else ""), whole=("node", "instance"))
    for d in report.plan.decisions:
        decisions.add_row(d.node, d.instance_id or "-", d.group or "-", str(d.action),
                      str(d.wanted) if d.wanted != d.action else "", d.reason)
    console.print(decisions)
    for line in report.plan.patterns:
        console.print(f"[bold yellow]pattern:[/] {line}", highlight=False)
    for op in report.operations:
        console.print(f"{op['op_id']}: {op['action']} {op['node']} -> {op['state']}"
                      + (f" (spare {op['swapped_in']} swapped in)" if op.get("swapped_in") else "")
                      + (f" (replaced by {', '.join(op['replaced_by'])})" if op["replaced_by"] else ""), highlight=False)
    for f in report.failures:
        err_console.print(f"[bold red]failed:[/] {f['op_id']} {f['action']} {f['node']} at {f['state']}: {f['error']}",
                          highlight=False, soft_wrap=True)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)


@heal_app.callback()
@handle_errors
def heal(
    ctx: typer.Context,
    inventory: Inventory = DEFAULT_PATH,
    dry_run: DryRun = False,
    probe: Probe = "ssm",
    tiers: Tiers = "quick",
    per_group: PerGroup = 1,
    per_pool: PerPool = 2,
    loop: Annotated[bool, typer.Option("--loop", help="Pass after pass, --interval apart.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes (1 to 3600).")] = 60.0,
    passes: Annotated[int, typer.Option("--passes", help="With --loop: stop after this many passes.")] = 1_000_000,
    json_output: Json = False,
) -> None:
    """One reconcile pass over the Slurm-run node groups (--loop: keep going)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"inventory": inventory, "dry_run": dry_run, "probe": probe, "tiers": tiers,
                   "per_group": per_group, "per_pool": per_pool, "json_output": json_output}
        return
    def one() -> core.HealReport:
        report = _pass(inventory, dry_run, probe, tiers, per_group, per_pool)
        _show(report, json_output)  # each pass as it ends: a service's log
        return report

    reports = core.heal_loop(interval if loop else core.MIN_INTERVAL_S, passes if loop else 1, one)
    if not reports[-1].ok:
        raise typer.Exit(1)


@heal_app.command("replace")
@handle_errors
def replace(ctx: typer.Context, node: Annotated[str, typer.Argument(help="The Slurm node to replace.")],
            json_output: Json = False) -> None:
    """Ask for NODE to be replaced (a drain with the reason 'gpufleet replace'), then run a pass."""
    from gpufleet.automation.slurm_client import SlurmClient

    opts = dict(ctx.obj or {})
    json_output = json_output or opts.pop("json_output", False)
    if opts.get("dry_run"):
        from gpufleet.infra.errors import BadInputError

        raise BadInputError("heal replace: --dry-run would leave the node drained for nothing",
                            "see the decision first: gpufleet heal --dry-run")
    core.request_replace(SlurmClient(), node)
    defaults = {"inventory": DEFAULT_PATH, "dry_run": False, "probe": "ssm", "tiers": "quick", "per_group": 1,
                "per_pool": 2}
    report = _pass(**{**defaults, **opts})
    _show(report, json_output)
    if not report.ok:
        raise typer.Exit(1)

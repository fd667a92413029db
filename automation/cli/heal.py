"""`gpufleet heal` (one pass, or --loop), `gpufleet heal replace NODE`: the healer on Slurm or EKS."""

from __future__ import annotations

from typing import Annotated

import typer

from gpufleet.automation import project
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.tables import table
from gpufleet.automation.heal import service as core
from gpufleet.automation.heal.run import PassOptions, configured_pass
from gpufleet.infra.errors import BadInputError

heal_app = typer.Typer(help="Heal the Slurm- or EKS-run node groups: leave, reboot or replace each faulty node.",
                       invoke_without_command=True)
app.add_typer(heal_app, name="heal")

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Decide and report; change nothing.")]
Probe = Annotated[str, typer.Option("--probe", help="How the gate reaches a newcomer: ssm, orchestrator (a pod on the node, a Slurm job), or local (this host); default: ssm on Slurm, orchestrator on EKS (no SSM in the PHI account).")]
Tiers = Annotated[str, typer.Option("--tiers", help="Health tiers a newcomer must pass (comma-separated).")]
PerGroup = Annotated[int, typer.Option("--per-group", help="Replacements per Auto Scaling group per hour.")]
PerPool = Annotated[int, typer.Option("--per-pool", help="Replacements per pool per hour.")]
OrchestratorOpt = Annotated[str, typer.Option("--orchestrator", help="Which groups to heal: slurm (this head node's) or eks.")]
SourcesOpt = Annotated[str, typer.Option("--sources", help="Sources besides the orchestrator (comma-separated): ec2 (status checks), prometheus (GPU alerts); '' for none.")]
PrometheusOpt = Annotated[str, typer.Option("--prometheus", help="Prometheus query base for the alerts (default: the inventory's Managed Prometheus, SigV4).")]
JoinTimeout = Annotated[float, typer.Option("--join-timeout", help="Seconds a newcomer's node has to join before the gate (0: gate at once).")]
Grace = Annotated[float | None, typer.Option("--checkpoint-grace", help="Seconds a drained node's jobs get after the checkpoint signal to save and requeue themselves (default: from their published checkpoint time, 30 s where none).")]


def _pass(**fields) -> core.HealReport:
    """One pass with these PassOptions fields (the rest at their defaults)."""
    return configured_pass(PassOptions(**fields), progress=lambda m: err_console.print(f"[dim]{m}[/]", highlight=False))


def _show(report: core.HealReport, json_output: bool) -> None:
    if json_output:
        print_json(report.to_dict())
        return
    # WANTED only where the budget or the floor held a decision back: at 80 columns its width is
    # what keeps a signal name (replace_requested) whole in REASON.
    held_back = any(d.wanted != d.action for d in report.plan.decisions)
    decisions = table("node", "instance", "group", "action", *(["wanted"] if held_back else []), "reason",
                      title="heal" + (" (dry run)" if report.dry_run else ""), whole=("node", "instance", "group"))
    for d in report.plan.decisions:
        decisions.add_row(d.node, d.instance_id or "-", d.group or "-", str(d.action),
                          *([str(d.wanted) if d.wanted != d.action else ""] if held_back else []), d.reason)
    console.print(decisions)
    for line in report.plan.patterns:
        console.print(f"[bold yellow]pattern:[/] {line}", highlight=False)
    for op in report.operations:
        console.print(f"{op['op_id']}: {op['action']} {op['node']} -> {op['state']}"
                      + (f" (spare {op['swapped_in']} swapped in)" if op.get("swapped_in") else "")
                      + (f" (replaced by {', '.join(op['replaced_by'])})" if op["replaced_by"] else ""), highlight=False)
    for f in report.failures:
        say(f"{f['op_id']} {f['action']} {f['node']} at {f['state']}: {f['error']}", label="failed: ", style="bold red")
    for note in report.notes:
        say(str(note), label="note: ", style="yellow")


@heal_app.callback()
@handle_errors
def heal(
    ctx: typer.Context,
    inventory: Inventory,
    dry_run: DryRun = False,
    probe: Probe = "",
    tiers: Tiers = "quick",
    per_group: PerGroup = 1,
    per_pool: PerPool = 2,
    loop: Annotated[bool, typer.Option("--loop", help="Pass after pass, --interval apart.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes (1 to 3600).")] = 60.0,
    passes: Annotated[int, typer.Option("--passes", help="With --loop: stop after this many passes.")] = 1_000_000,
    orchestrator: OrchestratorOpt = "slurm",
    sources: SourcesOpt = "ec2,prometheus",
    prometheus: PrometheusOpt = "",
    join_timeout: JoinTimeout = PassOptions.join_timeout_s,
    checkpoint_grace: Grace = None,
    json_output: Json = False,
) -> None:
    """One reconcile pass over the Slurm- (or --orchestrator eks: EKS-) run node groups (--loop: keep going)."""
    fields = {"inventory": inventory, "dry_run": dry_run, "probe": probe, "tiers": tiers, "per_group": per_group,
              "per_pool": per_pool, "orchestrator": orchestrator, "sources": sources, "prometheus": prometheus,
              "join_timeout_s": join_timeout, "checkpoint_grace_s": checkpoint_grace}
    if ctx.invoked_subcommand is not None:
        ctx.obj = {**fields, "json_output": json_output}
        return

    def one() -> core.HealReport:
        report = _pass(**fields)
        _show(report, json_output)  # each pass as it ends: a service's log
        return report

    reports = core.heal_loop(interval if loop else core.MIN_INTERVAL_S, passes if loop else 1, one)
    if not reports[-1].ok:
        raise typer.Exit(1)


@heal_app.command("replace")
@handle_errors
def replace(ctx: typer.Context, node: Annotated[str, typer.Argument(help="The Slurm or Kubernetes node to replace.")],
            stack: Annotated[str, typer.Option("--stack", help="With --orchestrator eks: the stack whose cluster has NODE (default: the only EKS stack).")] = "",
            json_output: Json = False) -> None:
    """Ask for NODE to be replaced (Slurm: a drain with the reason 'gpufleet replace'; EKS: the label
    gpufleet.io/replace=true), then run a pass."""
    opts = dict(ctx.obj or {})
    json_output = json_output or opts.pop("json_output", False)
    if opts.get("dry_run"):
        raise BadInputError("heal replace: --dry-run would leave the node drained for nothing",
                            "see the decision first: gpufleet heal --dry-run")
    if opts.get("orchestrator") == "eks":
        from gpufleet.automation.heal import kube_service
        from gpufleet.automation.inventory import load_inventory

        stacks = sorted({g.stack for g in kube_service.eks_groups(load_inventory(opts.get("inventory") or project.inventory_path()))})
        if not stack and len(stacks) != 1:
            raise BadInputError(f"heal replace {node}: --stack is needed (EKS stacks: {', '.join(stacks) or 'none'})")
        if stack and stack not in stacks:
            raise BadInputError(f"heal replace --stack {stack!r}: not an EKS stack (EKS stacks: {', '.join(stacks) or 'none'})")
        kube_service.request_replace(kube_service.default_kube(stack or stacks[0]), node)
    else:
        from gpufleet.automation.slurm_client import SlurmClient

        core.request_replace(SlurmClient(), node)
    report = _pass(**{"inventory": project.inventory_path(), **opts})
    _show(report, json_output)
    if not report.ok:
        raise typer.Exit(1)

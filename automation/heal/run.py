"""One configured heal pass from plain options: what `gpufleet heal` (the CLI) and
``python -m gpufleet.automation.heal`` (the healer's service on the Slurm head) both run.

No typer, rich or CLI import: the service runs from the healer archive (infra/healer_archive.py),
which holds only the modules this one imports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpufleet.automation.heal import service as core
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.grace import checked_grace
from gpufleet.automation.inventory import DEFAULT_PATH
from gpufleet.infra.errors import BadInputError

ORCHESTRATORS = ("slurm", "eks")


@dataclass(frozen=True, kw_only=True)
class PassOptions:
    inventory: Path = DEFAULT_PATH
    """Fleet inventory (stack outputs)."""
    dry_run: bool = False
    """Decide and report; change nothing."""
    probe: str = ""
    """How the gate reaches a newcomer: ssm, orchestrator, local; '': ssm on Slurm, orchestrator on EKS."""
    tiers: str = "quick"
    """Health tiers a newcomer must pass (comma-separated)."""
    per_group: int = 1
    """Replacements per Auto Scaling group per hour."""
    per_pool: int = 2
    """Replacements per pool per hour."""
    orchestrator: str = "slurm"
    """Which groups to heal: slurm or eks."""
    sources: str = "ec2,prometheus"
    """Sources besides the orchestrator (comma-separated); '' for none."""
    prometheus: str = ""
    """Prometheus query base for the alerts ('': the inventory's Managed Prometheus)."""
    join_timeout_s: float = 900.0
    """Seconds a newcomer's node has to join the orchestrator (its bootstrap, minutes after
    InService) before the gate probes it; 0 gates at once."""
    checkpoint_grace_s: float | None = None
    """Seconds a drained node's jobs get after the checkpoint signal to save and requeue themselves;
    None: from their published checkpoint time (heal/grace.py)."""
    identity: str = "caller"
    """caller: the operator's credentials through the automation role; instance: the Slurm head's
    instance role, which heals its own stack's groups only (automation/aws.py)."""


def configured_pass(options: PassOptions, progress: Callable[[str], None] = lambda _m: None) -> core.HealReport:
    """One pass with the default clients, probes and sources the options name."""
    from gpufleet.automation.heal.sources import default_sources
    from gpufleet.automation.health.replace import default_probes
    from gpufleet.automation.inventory import load_inventory

    if not 0 <= options.join_timeout_s <= 7200:
        raise BadInputError(f"--join-timeout {options.join_timeout_s:g}: expected 0 to 7200 seconds")
    checked_grace(options.checkpoint_grace_s)
    if options.orchestrator not in ORCHESTRATORS:
        raise BadInputError(f"--orchestrator {options.orchestrator!r}: expected slurm or eks")
    probe = options.probe or ("orchestrator" if options.orchestrator == "eks" else "ssm")
    args = core.HealArgs(inventory=options.inventory, dry_run=options.dry_run, probe=probe,
                         tiers=tuple(t for t in options.tiers.split(",") if t),
                         budget=HealBudget(per_group_per_hour=options.per_group, per_pool_per_hour=options.per_pool),
                         limits=Limits(join_timeout_s=options.join_timeout_s,
                                       checkpoint_grace_s=options.checkpoint_grace_s))
    inventory = load_inventory(options.inventory)
    access = None
    if options.identity != "caller":
        from gpufleet.automation.aws import AwsAccess

        if options.orchestrator != "slurm":
            raise BadInputError(f"--identity {options.identity}: the Slurm head's healer only (--orchestrator slurm)",
                                "on EKS the healer's Deployment has its own Pod Identity")
        if "prometheus" in options.sources.split(",") and not options.prometheus:
            raise BadInputError(f"--identity {options.identity} --sources {options.sources!r}: the head's roles "
                                "may not query the Managed Prometheus", "use --sources ec2, or --prometheus URL")
        access = AwsAccess(inventory, operation="heal", identity=options.identity)
        args = dataclasses.replace(args, stacks=(access.own_stack(),))
    probes = default_probes(probe, inventory, access=access)
    clients = core.default_clients(options.inventory, access)
    extra = default_sources(options.inventory, clients, tuple(x for x in options.sources.split(",") if x),
                            options.prometheus or None)
    if options.orchestrator == "eks":
        from gpufleet.automation.heal.kube_service import default_kube, kube_heal_pass

        return kube_heal_pass(args, clients=clients, kube=default_kube, probes=probes, progress=progress,
                              sources=extra)
    from gpufleet.automation.slurm_client import SlurmClient

    return core.heal_pass(args, clients=clients, slurm=SlurmClient(), probes=probes, progress=progress, sources=extra)

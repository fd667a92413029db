"""`gpufleet heal` on EKS: one reconcile pass over the EKS-run node groups of the inventory.

Per EKS stack, the stack's cluster (automation/kube_client.py: context ``gpufleet-<stack>``, or the
pod's own cluster when the healer runs as its Deployment) is read for its nodes, each tied to its
group by ``spec.providerID``; decided as on Slurm (decide.py, the same table and budget, every
healer's replacements counted); replacements run through ``KubeHealExecutor`` under the pool's lease. A replacement in a
group holding a hot spare swaps it in, and each pool short of its ``spares`` gets one launched
into its EKS training group (heal/kube_spares.py).

A reboot is not made on EKS (it would need ``ec2:RebootInstances`` on the operator role, which the
program does not grant): a reboot-class fault is reported held, the node stays tainted by its health
check (serving nothing), and an operator replaces it (``gpufleet.io/replace=true``) or clears it.

``request_replace(core, node)``: the label ``gpufleet.io/replace=true``, which the next pass replaces
through the same path and budget.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import cache

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.heal.decide import GroupState, NodeObservation
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.execute import HealExecutor
from gpufleet.automation.heal.gate_failures import with_gate_failures
from gpufleet.automation.heal.kube_execute import ORCHESTRATOR, KubeHealExecutor
from gpufleet.automation.heal.kube_observe import REPLACE_LABEL, kube_observations
from gpufleet.automation.heal.reconcile import (
    Observed,
    PassInputs,
    hold,
    run_pass,
)
from gpufleet.automation.heal.service import (
    Clients,
    HealArgs,
    HealReport,
    heal_ops,
    launch_spares,
    spare_launches,
)
from gpufleet.automation.health.probe import NodeProbe
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup, load_inventory
from gpufleet.automation.kube_client import call
from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.infra.errors import BadInputError
from gpufleet.lifecycle.health.results import Tier, parse_tiers

NO_REBOOT = "no reboot on EKS (the operator role has no ec2:RebootInstances); label the node gpufleet.io/replace=true to replace it"

Sources = Callable[[list[NodeObservation]], list[NodeObservation]]
"""More signals for the observations (EC2 status checks, Prometheus alerts: heal/sources.py)."""


def eks_groups(inventory: FleetInventory) -> list[StackNodeGroup]:
    # The program's own value: the healer reads the cluster itself, whatever the inventory's stand-in says.
    return [g for g in inventory.node_groups if g.group.orchestrator == ORCHESTRATOR]


def observe_eks(inventory: FleetInventory, clients: Clients, kube: Callable[[str], KubernetesOrchestrator],
                now: float) -> Observed:
    groups: dict[str, GroupState] = {}
    refs: dict[str, StackNodeGroup] = {}
    owner: dict[str, dict[str, tuple[str, str]]] = {}
    for ref in eks_groups(inventory):
        key = f"{ref.stack}/{ref.group.name}"
        seen = read_group(clients(ref.stack, "autoscaling"), ref.group.asg_name, key,
                          hint="refresh the inventory: gpufleet inventory collect")
        groups[key] = GroupState(in_service=len(seen.in_service), min_nodes=ref.group.min_nodes)
        refs[key] = ref
        for iid in seen.in_service:
            owner.setdefault(ref.stack, {})[iid] = (key, ref.group.pool)
    out: list[NodeObservation] = []
    for stack in sorted(owner):
        core = kube(stack).core
        out += kube_observations(call("list nodes", core.list_node).items, owner[stack], now)
    return out, groups, refs


def kube_heal_pass(args: HealArgs, *, clients: Clients, kube: Callable[[str], KubernetesOrchestrator],
                   probes: Callable[[str], NodeProbe], progress: Callable[[str], None] = lambda _m: None,
                   now: Callable[[], float] = time.time, journal: Journal | None = None,
                   sources: Sources = lambda observations: observations) -> HealReport:
    inventory = load_inventory(args.inventory)
    try:
        tiers = parse_tiers(",".join(args.tiers)) if args.tiers else (Tier.QUICK,)
    except ValueError as bad:
        raise BadInputError(f"--tiers {','.join(args.tiers)!r}: {bad}") from None
    journal = journal or Journal(clients(inventory.platform_stack, "dynamodb"), inventory.journal_table)
    kube = cache(kube)
    executor: HealExecutor = KubeHealExecutor(journal, kube, lambda stack: clients(stack, "autoscaling"), probes,
                                              tiers, args.limits, progress, ec2=lambda stack: clients(stack, "ec2"))

    def observe(at: float) -> Observed:
        observations, groups, refs = observe_eks(inventory, clients, kube, at)
        return with_gate_failures(sources(observations), heal_ops(journal)), groups, refs

    report = run_pass(PassInputs(orchestrator=ORCHESTRATOR, journal=journal, executor=executor, observe=observe,
                               budget=args.budget, dry_run=args.dry_run, progress=progress, now=now,
                               adjust=lambda plan: hold(plan, HealAction.REBOOT, NO_REBOOT)))
    if not args.dry_run:
        report = _top_up(report, args, inventory, clients, kube, executor, journal, progress, now())
    return dataclasses.replace(report, notes=(*report.notes, *getattr(sources, "notes", ())))


def _top_up(report: HealReport, args: HealArgs, inventory: FleetInventory, clients: Clients,
            kube: Callable[[str], KubernetesOrchestrator], executor: HealExecutor, journal: Journal,
            progress: Callable[[str], None], at: float) -> HealReport:
    """Launch each pool's missing hot spares into its EKS training group (heal/kube_spares.py)."""
    notes, ran, failures = list(report.notes), list(report.operations), list(report.failures)

    def observed() -> tuple[list[NodeObservation], dict[str, StackNodeGroup]]:
        observations, _groups, refs = observe_eks(inventory, clients, kube, at)
        return observations, refs

    wanted = spare_launches(inventory, heal_ops(journal), at, args.budget.window_s, notes, args.stacks, observed,
                            extra={"orchestrator": ORCHESTRATOR})
    launch_spares(executor, journal, wanted, lambda: at, progress, notes, ran, failures)
    return dataclasses.replace(report, notes=tuple(notes), operations=tuple(ran), failures=tuple(failures))


def request_replace(kube: KubernetesOrchestrator, node: str) -> None:
    """The EKS request path, from the CLI: label the node ``gpufleet.io/replace=true``."""
    nodes = call("list nodes", kube.core.list_node).items
    known = sorted(n.metadata.name for n in nodes)
    if node not in known:
        raise BadInputError(f"heal replace {node}: no such Kubernetes node", f"nodes: {', '.join(known) or 'none'}")
    call("patch node", kube.core.patch_node, node, {"metadata": {"labels": {REPLACE_LABEL: "true"}}})


def default_kube(stack: str) -> KubernetesOrchestrator:
    from gpufleet.automation.kube_client import api_client

    return KubernetesOrchestrator(api_client(stack))

"""`gpufleet health` core: run the node health checks on every node of the fleet (or one pool),
report per node, and optionally replace the failed instances from the same reservation.

Nodes are the in-service instances (``gpufleet.automation.auto_scaling``) of each consumer node
group's Auto Scaling group. Checks run through a NodeProbe per account (SSM Run Command on real nodes; ``local``: this host stands in
for every node). ``--replace`` first tells the group's workload manager (drain, requeue), then terminates a failed
instance with
``terminate_instance_in_auto_scaling_group(ShouldDecrementDesiredCapacity=False)``: the group
launches a replacement through the same launch template, hence the same capacity reservation,
and the replacements are checked in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.aws import translated
from gpufleet.automation.health.gate import GateReport, gate
from gpufleet.automation.health.probe import LocalProbe, NodeProbe, SsmProbe
from gpufleet.automation.inventory import (
    DEFAULT_PATH,
    FleetInventory,
    StackNodeGroup,
    load_inventory,
)
from gpufleet.infra.errors import BadInputError
from gpufleet.lifecycle.health.results import Tier

PROBES = ("ssm", "local")


@dataclass(frozen=True, kw_only=True)
class HealthArgs:
    pool: str | None = None
    """Only the node groups bound to this pool; None: every consumer group."""
    tiers: tuple[Tier, ...] = (Tier.QUICK, Tier.PERFORMANCE)
    """The check tiers to run (quick: seconds per node; performance: tens of seconds; deep: DCGM level 3,
    tens of minutes)."""
    replace: bool = False
    """Terminate FAILED instances so their group replaces them, then check the replacements."""
    probe: str = "ssm"
    """``ssm`` (the nodes themselves) or ``local`` (this host stands in for every node)."""
    inventory: Path = DEFAULT_PATH
    profile: str | None = None
    """AWS profile of the caller (None: AWS_PROFILE or the default chain)."""
    replace_timeout_s: float = 1200.0
    """How long to wait for the replacements to be InService."""


@dataclass(frozen=True, kw_only=True)
class NodeTarget:
    instance_id: str
    stack: str
    group: str
    asg_name: str
    pool: str
    instance_type: str
    orchestrator: str = "none"
    """The group's workload manager (slurm | eks | none), told before a replacement."""


@dataclass(frozen=True, kw_only=True)
class Replacement:
    """One failed instance handed back to its group."""

    instance_id: str
    stack: str
    asg_name: str
    activity_id: str | None
    replaced_by: tuple[str, ...] = ()
    """New instance(s) the group launched in its place (empty when none came up in time)."""


@dataclass(frozen=True, kw_only=True)
class HealthRun:
    tiers: tuple[Tier, ...]
    targets: tuple[NodeTarget, ...]
    report: GateReport
    replacements: tuple[Replacement, ...] = ()
    recheck: GateReport | None = None
    """The replacements' checks (``--replace``)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Every node passes now: the first check, or the re-check of what was replaced."""
        if self.report.ok:
            return True
        return bool(self.replacements) and self.recheck is not None and self.recheck.ok and all(
            r.replaced_by for r in self.replacements)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "tiers": [t.value for t in self.tiers],
            "targets": [t.__dict__ for t in self.targets], "report": self.report.to_dict(),
            "replacements": [{**r.__dict__, "replaced_by": list(r.replaced_by)} for r in self.replacements],
            "recheck": self.recheck.to_dict() if self.recheck else None, "notes": list(self.notes),
        }


Clients = Callable[[str, str], Any]
"""(stack, service) -> boto3 client of that stack's account."""
ProbeFactory = Callable[[str], NodeProbe]
"""stack -> the probe reaching that account's nodes."""
OrchestratorFactory = Callable[[str, str], Any]
"""(orchestrator kind, stack) -> gpufleet.automation.orchestrators adapter."""


def default_orchestrators(kind: str, stack: str) -> Any:
    from gpufleet.automation.orchestrators.factory import for_group

    return for_group(kind, stack=stack)


def stop_work(failed: Sequence[NodeTarget], reasons: Mapping[str, Sequence[str]], orchestrators: OrchestratorFactory,
              progress: Callable[[str], None]) -> None:
    """Tell each group's workload manager first: no new work, checkpoint and requeue what runs."""
    for (kind, stack), ids in _by_manager(failed).items():
        manager = orchestrators(kind, stack)
        why = "; ".join(r for i in ids for r in reasons.get(i, ()))[:200]
        manager.request_checkpoint(ids, f"gpufleet health: {why}")
        manager.evict(ids)
        progress(f"{kind}: drained {', '.join(ids)} before replacement")


def _by_manager(targets: Sequence[NodeTarget]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        out.setdefault((t.orchestrator, t.stack), []).append(t.instance_id)
    return out


def groups_of(inventory: FleetInventory, pool: str | None) -> list[StackNodeGroup]:
    groups = [g for g in inventory.node_groups if pool is None or g.group.pool == pool]
    if pool is not None and not groups:
        known = sorted({g.group.pool for g in inventory.node_groups})
        raise BadInputError(f"--pool {pool!r}: no node group of {inventory.source} uses it",
                            f"pools with node groups: {', '.join(known) or 'none'}")
    return groups


def in_service(client: Any, asg_name: str) -> tuple[int, list[str]]:
    """(desired capacity, in-service instance ids) of one group."""
    group = read_group(client, asg_name, asg_name, hint="refresh the inventory: gpufleet inventory collect")
    return group.desired, group.in_service


def find_targets(inventory: FleetInventory, clients: Clients, pool: str | None) -> list[NodeTarget]:
    targets = []
    for ref in groups_of(inventory, pool):
        g = ref.group
        _, ids = in_service(clients(ref.stack, "autoscaling"), g.asg_name)
        targets += [NodeTarget(instance_id=i, stack=ref.stack, group=g.name, asg_name=g.asg_name, pool=g.pool,
                               instance_type=g.instance_type, orchestrator=ref.orchestrator) for i in ids]
    return targets


def check_targets(targets: Sequence[NodeTarget], probes: ProbeFactory, tiers: Sequence[Tier],
                  progress: Callable[[str], None]) -> GateReport:
    """One gate per account (its own probe), merged into one report."""
    merged: GateReport | None = None
    for stack in dict.fromkeys(t.stack for t in targets):
        ids = [t.instance_id for t in targets if t.stack == stack]
        progress(f"checking {len(ids)} node(s) of {stack}: {'+'.join(t.value for t in tiers)}")
        part = gate(ids, probes(stack), tiers,
                    progress=lambda r: progress(f"{r.node}: {r.status.value} ({r.duration_s:.1f} s)"))
        merged = part if merged is None else GateReport(
            tiers=part.tiers, nodes=merged.nodes + part.nodes, passed=merged.passed + part.passed,
            failed={**merged.failed, **part.failed}, pool_results=merged.pool_results + part.pool_results)
    return merged or GateReport(tiers=tuple(tiers), nodes=(), passed=())


def replace_failed(failed: Sequence[NodeTarget], clients: Clients, timeout_s: float, progress: Callable[[str], None],
                   *, sleep: Callable[[float], None] = time.sleep, poll_s: float = 5.0) -> list[Replacement]:
    """Terminate each failed instance without lowering desired capacity; wait for the replacements."""
    before: dict[str, set[str]] = {}
    started: list[tuple[NodeTarget, str | None]] = []
    for t in failed:
        asg = clients(t.stack, "autoscaling")
        if t.asg_name not in before:
            before[t.asg_name] = set(in_service(asg, t.asg_name)[1])
        with translated(stack=t.stack, service="autoscaling", operation="terminate_instance_in_auto_scaling_group",
                        subject=t.instance_id):
            doc = asg.terminate_instance_in_auto_scaling_group(InstanceId=t.instance_id,
                                                               ShouldDecrementDesiredCapacity=False)
        started.append((t, doc.get("Activity", {}).get("ActivityId")))
        progress(f"{t.instance_id}: terminated; {t.asg_name} launches a replacement")
    deadline = time.monotonic() + timeout_s
    new: dict[str, list[str]] = {}
    pending = {t.asg_name: t.stack for t, _ in started}
    while pending:
        for name, stack in list(pending.items()):
            desired, ids = in_service(clients(stack, "autoscaling"), name)
            gone = {t.instance_id for t, _ in started if t.asg_name == name}
            fresh = [i for i in ids if i not in before[name]]
            if len(fresh) >= len(gone) and not (set(ids) & gone) and len(ids) >= desired:
                new[name] = fresh
                del pending[name]
                progress(f"{name}: replacements in service: {', '.join(fresh)}")
        if pending and time.monotonic() > deadline:
            break
        if pending:
            sleep(poll_s)
    out = []
    for t, activity in started:
        fresh = new.get(t.asg_name, [])
        mine = [i for i in fresh if i not in {r for o in out for r in o.replaced_by}][:1]
        out.append(Replacement(instance_id=t.instance_id, stack=t.stack, asg_name=t.asg_name, activity_id=activity,
                               replaced_by=tuple(mine)))
    return out


def default_probes(kind: str, inventory: FleetInventory, profile: str | None = None) -> ProbeFactory:
    if kind not in PROBES:
        raise BadInputError(f"--probe {kind!r}: expected one of {', '.join(PROBES)}")
    if kind == "local":
        probe = LocalProbe()
        return lambda stack: probe
    from gpufleet.automation.aws import AwsAccess

    access = AwsAccess(inventory, operation="health", profile=profile)
    cache: dict[str, NodeProbe] = {}

    def factory(stack: str) -> NodeProbe:
        if stack not in cache:
            cache[stack] = SsmProbe(access.session(stack), region=inventory.stacks[stack].region)
        return cache[stack]

    return factory


def aws_clients(inventory: FleetInventory, profile: str | None = None) -> Clients:
    from gpufleet.automation.aws import AwsAccess

    access = AwsAccess(inventory, operation="health", profile=profile)
    return lambda stack, service: access.client(stack, service)


def run_health(args: HealthArgs, *, clients: Clients | None = None, probes: ProbeFactory | None = None,
               orchestrators: OrchestratorFactory = default_orchestrators,
               progress: Callable[[str], None] = lambda _m: None) -> HealthRun:
    """Check every node, replace the failed ones when asked, and check the replacements."""
    if args.probe not in PROBES:
        raise BadInputError(f"--probe {args.probe!r}: expected one of {', '.join(PROBES)}")
    tiers = args.tiers
    inventory = load_inventory(args.inventory)
    groups_of(inventory, args.pool)  # bad --pool fails before any AWS call
    clients = clients or aws_clients(inventory, args.profile)
    probes = probes or default_probes(args.probe, inventory, args.profile)
    targets = find_targets(inventory, clients, args.pool)
    if not targets:
        return HealthRun(tiers=tiers, targets=(), report=GateReport(tiers=tiers, nodes=(), passed=()),
                         notes=("no InService instances in the selected node groups",))
    report = check_targets(targets, probes, tiers, progress)
    if not args.replace or report.ok:
        return HealthRun(tiers=tiers, targets=tuple(targets), report=report)
    failed = [t for t in targets if t.instance_id in report.failed]
    stop_work(failed, report.failed, orchestrators, progress)
    replacements = replace_failed(failed, clients, args.replace_timeout_s, progress)
    fresh = [NodeTarget(**{**t.__dict__, "instance_id": new}) for t, r in zip(failed, replacements, strict=True)
             for new in r.replaced_by]
    notes = tuple(f"{r.instance_id}: no replacement in service after {args.replace_timeout_s:.0f} s"
                  for r in replacements if not r.replaced_by)
    recheck = check_targets(fresh, probes, tiers, progress) if fresh else None
    run = HealthRun(tiers=tiers, targets=tuple(targets), report=report, replacements=tuple(replacements),
                    recheck=recheck, notes=notes)
    return run

"""`gpufleet health` core: run the node health checks on every node of the fleet (or one pool),
report per node, and optionally replace the failed instances from the same reservation.

Nodes are the in-service instances (``gpufleet.automation.auto_scaling``) of each consumer node
group's Auto Scaling group. Checks run through a NodeProbe per account (SSM Run Command on real nodes; ``local``: this host stands in
for every node). ``--replace`` first tells the group's workload manager (drain and the checkpoint
signal), gives the jobs the healer's checkpoint grace to save and requeue themselves, requeues what
stayed (automation/health/drain.py), then terminates a failed instance with
``terminate_instance_in_auto_scaling_group(ShouldDecrementDesiredCapacity=False)``: the group
launches a replacement through the same launch template, hence the same capacity reservation,
and the replacements are checked in turn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.aws import translated
from gpufleet.automation.group_ref import NodeGroupRef
from gpufleet.automation.heal.grace import checked_grace
from gpufleet.automation.health import blast
from gpufleet.automation.health.drain import Drain, drain
from gpufleet.automation.health.gate import GateReport, gate
from gpufleet.automation.health.probe import LocalProbe, NodeProbe, SsmProbe
from gpufleet.automation.inventory import (
    DEFAULT_PATH,
    FleetInventory,
    StackNodeGroup,
    load_inventory,
)
from gpufleet.automation.lease import Held, LeaseKeeper, Leases
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Journal, new_op_id
from gpufleet.infra.errors import BadInputError
from gpufleet.lifecycle.health.results import Tier

PROBES = ("orchestrator", "ssm", "local")


@dataclass(frozen=True, kw_only=True)
class HealthArgs:
    pool: str | None = None
    """Only the node groups bound to this pool; None: every consumer group."""
    tiers: tuple[Tier, ...] = (Tier.QUICK, Tier.PERFORMANCE)
    """The check tiers to run (quick: seconds per node; performance: tens of seconds; deep: DCGM level 3,
    tens of minutes)."""
    replace: bool = False
    """Terminate FAILED instances so their group replaces them, then check the replacements."""
    probe: str = "orchestrator"
    """``orchestrator`` (where the nodes live: a Job on the node, srun, the sandbox's emulated
    instance), ``ssm`` (Run Command; refused for a stack that holds PHI) or ``local`` (this host
    stands in for every node)."""
    inventory: Path = DEFAULT_PATH
    profile: str | None = None
    """AWS profile of the caller (None: AWS_PROFILE or the default chain)."""
    replace_timeout_s: float = 1200.0
    """How long to wait for the replacements to be InService."""
    max_per_group: float = 0.25
    """Blast radius: at most this many failed nodes of one group replaced per pass; a count (>= 1)
    or a fraction (< 1) of the group's nodes (at least one node)."""
    max_per_pool: float = 0.25
    """The same bound over all the node groups of one pool."""
    both_accounts: bool = False
    """Allow one pass to replace nodes in more than one account (training and inference)."""
    fleet_problem_fraction: float = 0.5
    """A check failing on more than this fraction of the checked nodes (at least two) is a fleet
    problem (an FSx outage, a bad driver rollout): reported, nothing replaced."""
    lease_s: float = 120.0
    """The pool leases taken while replacing (shared with rebalance: one operation per pool)."""
    checkpoint_grace_s: float | None = None
    """Seconds the failed nodes' jobs get after the checkpoint signal to save and requeue themselves;
    None: from their published checkpoint time (automation/heal/grace.py, as the healer)."""
    drain_timeout_s: float = 120.0
    """After the grace, how long the evicted work has to leave before the node is terminated anyway."""

    def __post_init__(self) -> None:
        checked_grace(self.checkpoint_grace_s)
        for name in ("max_per_group", "max_per_pool", "replace_timeout_s", "lease_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise BadInputError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: must be > 0")
        if not 0 < self.fleet_problem_fraction <= 1:
            raise BadInputError(f"fleet_problem_fraction {self.fleet_problem_fraction!r}: must be in (0, 1]")


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

    def to_dict(self) -> dict[str, Any]:
        """A node as the JSON names one (``node``), with its node group as status has it (docs/json.md),
        and the adapter told before a replacement (``adapter``: the inventory's stand-in in a sandbox,
        where status's ``orchestrator`` is the program's)."""
        return {"node": self.instance_id, "adapter": self.orchestrator, "node_group": asdict(NodeGroupRef(
            stack=self.stack, name=self.group, pool=self.pool, instance_type=self.instance_type, asg_name=self.asg_name))}


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
    deferred: tuple[str, ...] = ()
    """Failed instances left for a later pass by the blast-radius bounds."""
    fleet_problem: str | None = None
    """Why the failures look like a fleet problem (nothing was replaced), or None."""
    op_id: str | None = None
    """The replacement's id in the journal (its intents and results), when it replaced anything."""
    drains: tuple[Drain, ...] = ()
    """Per workload manager: the jobs signalled, their grace, which left on their own, which were requeued."""

    @property
    def ok(self) -> bool:
        """Every node passes now: the first check, or the re-check of what was replaced."""
        if self.report.ok:
            return True
        return (not self.deferred and self.fleet_problem is None and bool(self.replacements)
                and self.recheck is not None and self.recheck.ok and all(r.replaced_by for r in self.replacements))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "tiers": [t.value for t in self.tiers],
            "targets": [t.to_dict() for t in self.targets], "report": self.report.to_dict(),
            "replacements": [{**r.__dict__, "replaced_by": list(r.replaced_by)} for r in self.replacements],
            "recheck": self.recheck.to_dict() if self.recheck else None, "notes": list(self.notes),
            "deferred": list(self.deferred), "fleet_problem": self.fleet_problem, "op_id": self.op_id,
            "drains": [d.to_dict() for d in self.drains],
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
              progress: Callable[[str], None], *, grace_s: float | None = None, drain_timeout_s: float = 120.0,
              before_evict: Callable[[], None] = lambda: None,
              note: Callable[[str, str, dict[str, Any]], None] = lambda event, step, detail: None) -> list[Drain]:
    """Tell each group's workload manager first: no new work, checkpoint; then, once the jobs' grace
    is over, requeue (evict) only what did not leave on its own."""
    managers = {key: (orchestrators(*key), ids) for key, ids in _by_manager(failed).items()}
    why = {key: "gpufleet health: " + "; ".join(r for i in ids for r in reasons.get(i, ()))[:200]
           for key, ids in _by_manager(failed).items()}
    drains = drain(managers, why, grace_s, progress, drain_timeout_s=drain_timeout_s, before_evict=before_evict,
                   note=note)
    for d in drains:
        progress(f"{d.orchestrator}: drained {', '.join(d.nodes)} before replacement")
    return drains


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
                   *, sleep: Callable[[float], None] = time.sleep, poll_s: float = 5.0,
                   before_call: Callable[[NodeTarget], None] = lambda t: None,
                   after_call: Callable[[NodeTarget, str | None], None] = lambda t, a: None) -> list[Replacement]:
    """Terminate each failed instance without lowering desired capacity; wait for the replacements.

    ``before_call`` runs right before each terminate (the lease's fence and the journaled intent),
    ``after_call`` right after it (the result)."""
    before: dict[str, set[str]] = {}
    started: list[tuple[NodeTarget, str | None]] = []
    for t in failed:
        asg = clients(t.stack, "autoscaling")
        if t.asg_name not in before:
            before[t.asg_name] = set(in_service(asg, t.asg_name)[1])
        before_call(t)
        with translated(stack=t.stack, service="autoscaling", operation="terminate_instance_in_auto_scaling_group",
                        subject=t.instance_id):
            doc = asg.terminate_instance_in_auto_scaling_group(InstanceId=t.instance_id,
                                                               ShouldDecrementDesiredCapacity=False)
        started.append((t, doc.get("Activity", {}).get("ActivityId")))
        after_call(t, started[-1][1])
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


def default_probes(kind: str, inventory: FleetInventory, profile: str | None = None,
                   access: Any = None) -> ProbeFactory:
    """``access``: the ``AwsAccess`` whose sessions the SSM probe uses (else the caller's)."""
    if kind not in PROBES:
        raise BadInputError(f"--probe {kind!r}: expected one of {', '.join(PROBES)}")
    if kind == "local":
        probe = LocalProbe()
        return lambda stack: probe
    if kind == "orchestrator":
        from gpufleet.automation.health.node_probes import orchestrator_probes

        return orchestrator_probes(inventory, dcgm_level=3)
    from gpufleet.automation.aws import AwsAccess

    access = access or AwsAccess(inventory, operation="health", profile=profile)
    cache: dict[str, NodeProbe] = {}

    def factory(stack: str) -> NodeProbe:
        if stack not in cache:
            cache[stack] = SsmProbe(access.session(stack), region=inventory.stacks[stack].region)
        return cache[stack]

    return factory


def aws_clients(inventory: FleetInventory, profile: str | None = None) -> Clients:
    from gpufleet.automation.aws import AwsAccess

    access = AwsAccess(inventory, operation="health", profile=profile)
    return lambda stack, service: access.client(stack, service,
                                                passthrough=CONTROL_FLOW if service == "dynamodb" else ())


def run_health(args: HealthArgs, *, clients: Clients | None = None, probes: ProbeFactory | None = None,
               orchestrators: OrchestratorFactory = default_orchestrators,
               progress: Callable[[str], None] = lambda _m: None) -> HealthRun:
    """Check every node, replace the failed ones when asked, and check the replacements."""
    if args.probe not in PROBES:
        raise BadInputError(f"--probe {args.probe!r}: expected one of {', '.join(PROBES)}")
    tiers = args.tiers
    inventory = load_inventory(args.inventory)
    groups = groups_of(inventory, args.pool)  # bad --pool fails before any AWS call
    if args.probe == "ssm":
        for stack in sorted({g.stack for g in groups}):
            gate_config = inventory.stacks[stack].health_gate
            if gate_config is not None and not gate_config.ssm_allowed:
                raise BadInputError(f"--probe ssm: stack {stack} holds PHI and its account forbids SSM",
                                    "omit --probe (the probe where the nodes live), or pick a --pool outside it")
    clients = clients or aws_clients(inventory, args.profile)
    probes = probes or default_probes(args.probe, inventory, args.profile)
    targets = find_targets(inventory, clients, args.pool)
    if not targets:
        return HealthRun(tiers=tiers, targets=(), report=GateReport(tiers=tiers, nodes=(), passed=()),
                         notes=("no InService instances in the selected node groups",))
    report = check_targets(targets, probes, tiers, progress)
    if not args.replace or report.ok:
        return HealthRun(tiers=tiers, targets=tuple(targets), report=report)
    floors = {g.group.asg_name: g.group.min_nodes for g in groups_of(inventory, args.pool)}
    picked = blast.select(targets, list(report.failed), floors, blast.Bounds(
        max_per_group=args.max_per_group, max_per_pool=args.max_per_pool, both_accounts=args.both_accounts,
        fleet_problem_fraction=args.fleet_problem_fraction))
    if not picked.chosen:
        return HealthRun(tiers=tiers, targets=tuple(targets), report=report, notes=picked.reasons,
                         deferred=picked.deferred, fleet_problem=picked.fleet_problem)
    failed = [t for t in targets if t.instance_id in set(picked.chosen)]
    journal = Journal(clients(inventory.platform_stack, "dynamodb"), inventory.journal_table)
    leases, op_id = Leases(journal), "rp-" + new_op_id()[3:]
    held: dict[str, Held] = {}
    try:
        for pool in sorted({t.pool for t in failed}):  # every pool first: refused before anything is done
            held[pool] = leases.acquire(pool, op_id, args.lease_s, kind="replace")
        journal.note(op_id, "intent", "replace", {"nodes": list(picked.chosen), "deferred": list(picked.deferred),
                                                  "tokens": {p: h.token for p, h in held.items()}})

        def fenced(t: NodeTarget) -> None:
            leases.fence(held[t.pool], args.lease_s)
            journal.note(op_id, "intent", "replace", {"call": "TerminateInstanceInAutoScalingGroup",
                                                      "instance": t.instance_id, "asg": t.asg_name, "decrement": False})

        def done(t: NodeTarget, activity: str | None) -> None:
            journal.note(op_id, "result", "replace", {"call": "TerminateInstanceInAutoScalingGroup",
                                                      "instance": t.instance_id, "activity": activity})

        with contextlib.ExitStack() as stack:
            keepers = [stack.enter_context(LeaseKeeper(leases, lambda h=h: h, args.lease_s)) for h in held.values()]

            def fences() -> None:
                for keeper in keepers:
                    keeper.check()
                for h in held.values():
                    leases.fence(h, args.lease_s)

            drains = stop_work(failed, report.failed, orchestrators, progress, grace_s=args.checkpoint_grace_s,
                               drain_timeout_s=args.drain_timeout_s, before_evict=fences,
                               note=lambda event, step, detail: journal.note(op_id, event, step, detail))
            replacements = replace_failed(failed, clients, args.replace_timeout_s, progress,
                                          before_call=fenced, after_call=done)
            for keeper in keepers:
                keeper.check()
        journal.note(op_id, "result", "replace", {"replaced": {r.instance_id: list(r.replaced_by) for r in replacements}})
    finally:
        for h in held.values():
            leases.release(h)
    fresh = [NodeTarget(**{**t.__dict__, "instance_id": new}) for t, r in zip(failed, replacements, strict=True)
             for new in r.replaced_by]
    notes = picked.reasons + tuple(f"{r.instance_id}: no replacement in service after {args.replace_timeout_s:.0f} s"
                                   for r in replacements if not r.replaced_by)
    recheck = check_targets(fresh, probes, tiers, progress) if fresh else None
    return HealthRun(tiers=tiers, targets=tuple(targets), report=report, replacements=tuple(replacements),
                     recheck=recheck, notes=notes, deferred=picked.deferred, op_id=op_id,
                     drains=tuple(drains))

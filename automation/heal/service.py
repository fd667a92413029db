"""`gpufleet heal` core: one reconcile pass (and a bounded loop) over the Slurm-run node groups.

A pass: resume the heal operations a previous healer left in flight (the journal), read Slurm's
nodes and drain reasons and each group's Auto Scaling group, decide (``decide.py``), and act on
what the decision says, one operation at a time, each under the lease of its node's pool (an
operation refused the lease is deferred and not journaled; the other pools go on). ``dry_run`` decides only.
``request_replace(node)`` is the Slurm request path: a drain with the reason ``gpufleet replace``,
which the next pass (run at once) replaces through the same path and budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.heal.decide import (
    GroupState,
    HealBudget,
    HealPlan,
    NodeObservation,
    PastAction,
    decide,
)
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.execute import KIND, SPARE, HealExecutor, Limits, new_heal_id
from gpufleet.automation.heal.gate_failures import with_gate_failures
from gpufleet.automation.heal.observe import (
    REQUEST_REASON,
    not_ready_for,
    reason_signals,
    rebooting,
)
from gpufleet.automation.heal.spares import is_spare
from gpufleet.automation.health.probe import NodeProbe
from gpufleet.automation.inventory import (
    DEFAULT_PATH,
    FleetInventory,
    StackNodeGroup,
    load_inventory,
)
from gpufleet.automation.rebalance.journal import Journal, Operation
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.infra.errors import BadInputError, ConflictError, GpufleetError
from gpufleet.lifecycle.health.results import Tier, parse_tiers

MAX_INTERVAL_S = 3600.0
MIN_INTERVAL_S = 1.0


@dataclass(frozen=True, kw_only=True)
class HealArgs:
    inventory: Path = DEFAULT_PATH
    dry_run: bool = False
    """Decide and report; change nothing."""
    probe: str = "ssm"
    """How the gate reaches a newcomer: ssm (the node) or local (this host stands in)."""
    tiers: tuple[str, ...] = ("quick",)
    """Health tiers a newcomer must pass before it is admitted."""
    budget: HealBudget = field(default_factory=HealBudget)
    limits: Limits = field(default_factory=Limits)
    stacks: tuple[str, ...] = ()
    """Heal only these stacks' groups (the instance identity: the head's own stack); (): every stack."""


@dataclass(frozen=True, kw_only=True)
class HealReport:
    plan: HealPlan
    resumed: tuple[str, ...] = ()
    """Operations a previous healer left in flight, driven on by this pass."""
    operations: tuple[dict[str, Any], ...] = ()
    """Each operation this pass ran: op id, action, node, state reached."""
    notes: tuple[str, ...] = ()
    failures: tuple[dict[str, Any], ...] = ()
    """Operations whose step failed (op id, node, state, error); journaled, resumed by the next pass."""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": self.dry_run, **self.plan.to_dict(), "resumed": list(self.resumed),
                "operations": list(self.operations), "failures": list(self.failures), "notes": list(self.notes)}


Clients = Callable[[str, str], Any]


def slurm_groups(inventory: FleetInventory, stacks: tuple[str, ...] = ()) -> list[StackNodeGroup]:
    # The program's own value: the healer reads Slurm itself, whatever the inventory's stand-in says.
    return [g for g in inventory.node_groups if g.group.orchestrator == "slurm" and (not stacks or g.stack in stacks)]


def heal_ops(journal: Journal) -> list[Operation]:
    return [op for op in journal.list_ops() if op.body.get("kind") == KIND]


def past_actions(ops: list[Operation]) -> list[PastAction]:
    actions = {str(a) for a in HealAction}
    return [PastAction(instance_id=op.body["instance_id"], group=op.body["group"], pool=op.body["pool"],
                       action=HealAction(op.body["action"]), at=float(op.body["at"]))
            for op in ops if op.body["action"] in actions]  # a spare's launch replaces nothing


def observe(slurm: SlurmClient, inventory: FleetInventory, clients: Clients,
            now: float, stacks: tuple[str, ...] = ()) -> tuple[list[NodeObservation], dict[str, GroupState], dict[str, StackNodeGroup]]:
    """Slurm's nodes as observations, each tied to its group by its instance id; each group's size."""
    groups: dict[str, GroupState] = {}
    owner: dict[str, tuple[str, StackNodeGroup]] = {}
    refs: dict[str, StackNodeGroup] = {}
    for ref in slurm_groups(inventory, stacks):
        key = f"{ref.stack}/{ref.group.name}"
        seen = read_group(clients(ref.stack, "autoscaling"), ref.group.asg_name, key,
                          hint="refresh the inventory: gpufleet inventory collect")
        groups[key] = GroupState(in_service=len(seen.in_service), min_nodes=ref.group.min_nodes)
        refs[key] = ref
        for iid in seen.in_service:
            owner[iid] = (key, ref)
    out = []
    for node in slurm.nodes():
        iid = next((i for i in sorted(node.instance_ids) if i in owner), "")
        key, ref = owner.get(iid, ("", None))
        out.append(NodeObservation(node=node.name, instance_id=iid, group=key,
                                   pool=ref.group.pool if ref else "", signals=reason_signals(node.reason),
                                   not_ready_s=not_ready_for(node, now), rebooting=rebooting(node),
                                   spare=is_spare(node)))
    return out, groups, refs


def heal_pass(args: HealArgs, *, clients: Clients, slurm: SlurmClient, probes: Callable[[str], NodeProbe],
              progress: Callable[[str], None] = lambda _m: None, now: Callable[[], float] = time.time,
              journal: Journal | None = None,
              sources: Callable[[list[NodeObservation]], list[NodeObservation]] = lambda observations: observations,
              ) -> HealReport:
    """``sources``: more signals for Slurm's observations (EC2 status checks, Prometheus alerts:
    heal/sources.py); its ``notes``, if it has them, join the report's."""
    inventory = load_inventory(args.inventory)
    try:
        tiers = parse_tiers(",".join(args.tiers)) if args.tiers else (Tier.QUICK,)
    except ValueError as bad:
        raise BadInputError(f"--tiers {','.join(args.tiers)!r}: {bad}") from None
    journal = journal or Journal(clients(inventory.platform_stack, "dynamodb"), inventory.journal_table)
    executor = HealExecutor(journal, slurm, lambda stack: clients(stack, "autoscaling"), probes, tiers,
                            args.limits, progress, ec2=lambda stack: clients(stack, "ec2"))
    ops = heal_ops(journal)
    notes: list[str] = []
    resumed, ran, failures = [], [], []
    if not args.dry_run:
        notes += executor.release_ended(ops)
        # An EKS healer's operations (body orchestrator: eks) are its own to resume (heal/reconcile.py).
        # A healer held to its own stack leaves another stack's operations to that stack's healer.
        for op in [o for o in ops if o.state not in TERMINAL and o.body.get("orchestrator", "slurm") == "slurm"
                   and (not args.stacks or o.body.get("stack") in args.stacks)]:
            progress(f"{op.op_id}: resuming {op.body['action']} of {op.body['node']} from {op.state}")
            try:
                done = executor.run(op)
            except ConflictError as held:
                notes.append(f"{op.op_id}: not resumed: {held.message}")
                continue
            except GpufleetError as error:
                failures.append(failure(journal, op, error))
                continue
            resumed.append(op.op_id)
            ran.append(summary(done))
        ops = heal_ops(journal)
    observations, groups, refs = observe(slurm, inventory, clients, now(), args.stacks)
    observations = with_gate_failures(sources(observations), ops)
    notes += getattr(sources, "notes", [])
    # A spare an operation in flight swaps in is that operation's, not the next decision's.
    in_flight = {n for op in ops if op.state not in TERMINAL for n in (op.body["node"], op.body.get("swap_with"))}
    plan = decide([o for o in observations if o.node not in in_flight], past_actions(ops), args.budget, groups,
                  now())
    if args.dry_run:
        return HealReport(plan=plan, notes=tuple(notes), dry_run=True)
    for d in plan.acting():
        ref = refs.get(d.group)
        op_id = new_heal_id(now())
        body = {"kind": KIND, "action": str(d.action), "node": d.node, "instance_id": d.instance_id,
                "group": d.group, "pool": d.pool, "reason": d.reason[:300], "signals": list(d.signals), "at": now(),
                "stack": ref.stack if ref else "", "asg": ref.group.asg_name if ref else "",
                "swap_with": d.swap_with, "swap_instance": d.swap_instance}
        try:
            op = executor.start(op_id, body)
        except ConflictError as held:
            # The pool is busy (a move, a replacement, an operation in flight): the next pass decides again.
            notes.append(f"{d.action} of {d.node} deferred: {held.message}")
            continue
        progress(f"{op_id}: {d.action} {d.node} ({d.reason[:120]})")
        try:
            ran.append(summary(executor.run(op)))
        except ConflictError as held:
            notes.append(f"{op_id}: {d.action} of {d.node} stopped: {held.message}")
            continue
        except GpufleetError as error:
            # One node's failure must not stop the others; the operation stays journaled.
            failures.append(failure(journal, op, error))
    spares = spares_wanted(slurm, inventory, clients, heal_ops(journal), now(), args.budget.window_s, notes, args.stacks)
    launch_spares(executor, journal, spares, now, progress, notes, ran, failures)
    return HealReport(plan=plan, resumed=tuple(resumed), operations=tuple(ran), notes=tuple(notes),
                      failures=tuple(failures))


def spares_wanted(slurm: SlurmClient, inventory: FleetInventory, clients: Clients, ops: list[Operation],
                  now: float, window_s: float, notes: list[str],
                  stacks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The Slurm healer's spare launches (``spare_launches``)."""
    def observed() -> tuple[list[NodeObservation], dict[str, StackNodeGroup]]:
        observations, _groups, refs = observe(slurm, inventory, clients, now, stacks)
        return observations, refs

    return spare_launches(inventory, ops, now, window_s, notes, stacks, observed)


def spare_launches(inventory: FleetInventory, ops: list[Operation], now: float, window_s: float, notes: list[str],
                   stacks: tuple[str, ...],
                   observed: Callable[[], tuple[list[NodeObservation], dict[str, StackNodeGroup]]],
                   extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One spare launch per pool short of its ``spares`` (held ones counted after this pass acted),
    in the pool's first training group of ``observed``'s groups (this healer's orchestrator), unless
    an operation of the pool is in flight (a swap's newcomer becomes a spare of its own) or a
    launch of the pool rolled back within the budget's window (a full reservation: a loop must not
    journal a launch every pass). A healer held to its own ``stacks`` launches into a pool with
    groups in other stacks only by the pool's reservation's own count (heal/spare_slot.py), and
    not at all into an on-demand one (noted). ``extra``: more body fields (the EKS healer's
    ``orchestrator``)."""
    if not any(p.spares for p in inventory.pools):
        return []
    busy = {op.body.get("pool") for op in ops if op.state not in TERMINAL}
    for op in ops:
        if op.body["action"] == SPARE and op.state is MoveState.ROLLED_BACK and now - float(op.body["at"]) < window_s:
            if op.body["pool"] not in busy:
                notes.append(f"no hot spare launched in pool {op.body['pool']}: {op.op_id} rolled back "
                             f"{(now - float(op.body['at'])) / 60:.0f} min ago; retried after {window_s / 3600:g} h")
            busy.add(op.body["pool"])
    observations, refs = observed()
    out = []
    for pool in inventory.pools:
        holder = next((k for k, r in refs.items() if r.group.pool == pool.name and r.role == "training"), None)
        if not pool.spares or holder is None or pool.name in busy:
            continue
        others = sorted({g.stack for g in inventory.node_groups if g.group.pool == pool.name} - set(stacks or ()))
        held_to_own = bool(stacks and others)
        held = sum(1 for o in observations if o.group == holder and o.spare)
        if held >= pool.spares:
            continue
        if held_to_own and not pool.reservation_id:
            # No engine count to read: the pool's count is shared with groups this healer may not
            # read, and an on-demand launch beyond it would pass unnoticed (heal/spare_slot.py).
            notes.append(f"no hot spare launched in pool {pool.name}: on-demand (no reservation to count free "
                         f"slots in) and its groups in {', '.join(others)} are not this healer's to read "
                         "(spares are kept by the automation's heal pass)")
            continue
        ref = refs[holder]
        out.append({"kind": KIND, "action": SPARE, "node": "", "instance_id": "", "group": holder, "pool": pool.name,
                    "reason": f"pool {pool.name} holds {held} of its {pool.spares} hot spares", "signals": [],
                    "at": now, "stack": ref.stack, "asg": ref.group.asg_name, "swap_with": "", "swap_instance": "",
                    "pool_count": pool.count,
                    # Held to its own stack(s), the healer reads the reservation's count and its own
                    # groups' launches in flight; otherwise every group's claim (heal/spare_slot.py).
                    "pool_groups": [[g.stack, g.group.asg_name] for g in inventory.node_groups
                                    if g.group.pool == pool.name and (not held_to_own or g.stack in stacks)],
                    **({"reservation_id": pool.reservation_id} if held_to_own else {}), **(extra or {})})
    return out


def failure(journal: Journal, op: Operation, error: GpufleetError) -> dict[str, Any]:
    now = journal.load(op.op_id) or op
    return {"op_id": op.op_id, "action": op.body["action"], "node": op.body["node"], "state": str(now.state),
            "error": error.message, "hint": error.hint}


def summary(op: Operation) -> dict[str, Any]:
    b = op.body
    return {"op_id": op.op_id, "action": b["action"], "node": b["node"], "instance_id": b["instance_id"],
            "state": str(op.state), "replaced_by": list(b.get("replaced_by") or ()),
            "swapped_in": b.get("swap_with") or None}


def launch_spares(executor: HealExecutor, journal: Journal, bodies: Iterable[dict[str, Any]],
                  now: Callable[[], float], progress: Callable[[str], None], notes: list[str],
                  ran: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
    """Start and run one journaled operation per wanted hot spare (both healers), appending to the
    pass's notes, operations and failures; a spare held by another's lease is deferred to a later pass."""
    for body in bodies:
        op_id = new_heal_id(now())
        try:
            op = executor.start(op_id, body)
        except ConflictError as held:
            notes.append(f"a hot spare of pool {body['pool']} deferred: {held.message}")
            continue
        progress(f"{op_id}: launch a hot spare of pool {body['pool']} in {body['group']}")
        try:
            done = executor.run(op)
            ran.append(summary(done))
            if done.body.get("no_slot"):
                notes.append(f"no hot spare launched in pool {body['pool']}: {done.body['no_slot']}")
        except ConflictError as held:
            notes.append(f"{op_id}: the spare of {body['pool']} stopped: {held.message}")
        except GpufleetError as error:
            failures.append(failure(journal, op, error))


def request_replace(slurm: SlurmClient, node: str) -> None:
    """The Slurm request path, from the CLI: drain the node with the reason the healer replaces on."""
    known = {n.name for n in slurm.nodes()}
    if node not in known:
        raise BadInputError(f"heal replace {node}: no such Slurm node", f"nodes: {', '.join(sorted(known)) or 'none'}")
    slurm.update_nodes([node], State="DRAIN", Reason=REQUEST_REASON)


def heal_loop(interval_s: float, passes: int, run_pass: Callable[[], HealReport],
              sleep: Callable[[float], None] = time.sleep) -> list[HealReport]:
    """``passes`` passes ``interval_s`` apart (both bounded)."""
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise BadInputError(f"--interval {interval_s:g}: expected {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g} seconds")
    if not 1 <= passes <= 1_000_000:
        raise BadInputError(f"--passes {passes}: expected 1 to 1000000")
    reports = []
    for i in range(passes):
        reports.append(run_pass())
        if i + 1 < passes:
            sleep(interval_s)
    return reports


def default_clients(inventory_path: Path, access: Any = None) -> Clients:
    """Per (stack, service), made once; the journal's DynamoDB answers its compare-and-set itself.
    ``access``: the ``AwsAccess`` to use (the instance identity's), else the caller's."""
    from gpufleet.automation.aws import AwsAccess
    from gpufleet.automation.rebalance.service import cached_clients

    return cached_clients(access or AwsAccess(load_inventory(inventory_path), operation="heal"))

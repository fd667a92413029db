"""One heal pass whatever the orchestrator: resume this healer's operations left in flight, observe,
decide within the budget (every healer's replacements count), act one operation at a time under the
pool's lease. The Slurm pass (service.py) has the same shape; the EKS pass (kube_service.py) runs
through this one.

An operation belongs to the healer of its body's ``orchestrator`` (absent: ``slurm``, as the Slurm
healer journals them): a healer resumes only its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.heal.decide import (
    GroupState,
    HealBudget,
    HealPlan,
    NodeDecision,
    NodeObservation,
    decide,
)
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.execute import KIND, HealExecutor, new_heal_id
from gpufleet.automation.heal.service import HealReport, failure, heal_ops, past_actions, summary
from gpufleet.automation.inventory import StackNodeGroup
from gpufleet.automation.rebalance.journal import Journal, Operation
from gpufleet.automation.rebalance.state import TERMINAL
from gpufleet.infra.errors import ConflictError, GpufleetError

Observed = tuple[list[NodeObservation], dict[str, GroupState], dict[str, StackNodeGroup]]
"""Observations, each group's size (``stack/group`` -> state), each group's inventory entry."""


def orchestrator_of(op: Operation) -> str:
    return str(op.body.get("orchestrator") or "slurm")


@dataclass(frozen=True, kw_only=True)
class PassInputs:
    orchestrator: str
    """Whose operations these are (``eks``; ``slurm``)."""
    journal: Journal
    executor: HealExecutor
    observe: Callable[[float], Observed]
    """Now -> what the sources see."""
    budget: HealBudget
    dry_run: bool
    progress: Callable[[str], None]
    now: Callable[[], float]
    adjust: Callable[[HealPlan], HealPlan] = lambda plan: plan
    """What this orchestrator cannot do, turned into a held decision (EKS: reboots)."""


def run_pass(p: PassInputs) -> HealReport:
    notes: list[str] = []
    resumed, ran, failures = [], [], []
    mine = [op for op in heal_ops(p.journal) if orchestrator_of(op) == p.orchestrator]
    if not p.dry_run:
        notes += p.executor.release_ended(mine)
        for op in [o for o in mine if o.state not in TERMINAL]:
            p.progress(f"{op.op_id}: resuming {op.body['action']} of {op.body['node']} from {op.state}")
            try:
                done = p.executor.run(op)
            except ConflictError as held:
                notes.append(f"{op.op_id}: not resumed: {held.message}")
                continue
            except GpufleetError as error:
                failures.append(failure(p.journal, op, error))
                continue
            resumed.append(op.op_id)
            ran.append(summary(done))
    ops = heal_ops(p.journal)
    observations, groups, refs = p.observe(p.now())
    # A spare an operation in flight swaps in is that operation's, not the next decision's.
    in_flight = {n for op in ops if op.state not in TERMINAL and orchestrator_of(op) == p.orchestrator
                 for n in (op.body["node"], op.body.get("swap_with"))}
    plan = p.adjust(decide([o for o in observations if o.node not in in_flight], past_actions(ops), p.budget,
                           groups, p.now()))
    if p.dry_run:
        return HealReport(plan=plan, notes=tuple(notes), dry_run=True)
    for d in plan.acting():
        op_id = new_heal_id(p.now())
        try:
            op = p.executor.start(op_id, body_of(d, refs.get(d.group), p.orchestrator, p.now()))
        except ConflictError as held:
            # The pool is busy (a move, a replacement, an operation in flight): the next pass decides again.
            notes.append(f"{d.action} of {d.node} deferred: {held.message}")
            continue
        p.progress(f"{op_id}: {d.action} {d.node} ({d.reason[:120]})")
        try:
            ran.append(summary(p.executor.run(op)))
        except ConflictError as held:
            notes.append(f"{op_id}: {d.action} of {d.node} stopped: {held.message}")
        except GpufleetError as error:
            # One node's failure must not stop the others; the operation stays journaled.
            failures.append(failure(p.journal, op, error))
    return HealReport(plan=plan, resumed=tuple(resumed), operations=tuple(ran), notes=tuple(notes),
                      failures=tuple(failures))


def body_of(d: NodeDecision, ref: StackNodeGroup | None, orchestrator: str, now: float) -> dict[str, Any]:
    return {"kind": KIND, "orchestrator": orchestrator, "action": str(d.action), "node": d.node,
            "instance_id": d.instance_id, "group": d.group, "pool": d.pool, "reason": d.reason[:300],
            "signals": list(d.signals), "at": now, "stack": ref.stack if ref else "",
            "asg": ref.group.asg_name if ref else "", "swap_with": d.swap_with, "swap_instance": d.swap_instance}


def hold(plan: HealPlan, action: HealAction, why: str) -> HealPlan:
    """The plan with every ``action`` decision turned into a held leave, saying why."""
    return dataclasses.replace(plan, decisions=tuple(
        dataclasses.replace(d, action=HealAction.LEAVE, reason=f"held: {why} (wanted {action}: {d.reason})")
        if d.action is action else d for d in plan.decisions))

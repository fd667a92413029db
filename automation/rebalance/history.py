"""Past and present moves, read from the journal: `gpufleet rebalance ls` and `rebalance show OP_ID`.

Read-only: the op items give the plan and what was done; the events (one per transition, intent
and result) give the timeline. A state's span runs from its transition event to the next one; the
last state of a finished move has no span (it is where the move ended).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpufleet.automation.group_ref import NodeGroupRef
from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Event, Journal, Operation
from gpufleet.automation.rebalance.state import TERMINAL
from gpufleet.infra.errors import BadInputError


def iso(at_ns: int) -> str:
    """ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(at_ns / 1e9, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class MoveSummary:
    """One move as `rebalance ls` lists it (and as `status` lists moves in flight)."""

    op_id: str
    state: str
    pool: str
    from_role: str
    to_role: str
    nodes: int
    started_at: str | None
    """When the move was journaled (ISO 8601 UTC); None when the journal has no event for it."""
    duration_s: float | None
    """Journaled to the last event for a finished move, to now for one in flight."""
    finished: bool
    """DONE or ROLLED_BACK."""


@dataclass(frozen=True, kw_only=True)
class StateSpan:
    """A state the move was in, and for how long."""

    state: str
    entered_at: str
    """ISO 8601 UTC."""
    offset_s: float
    """Seconds from the move's first event to this state's."""
    duration_s: float | None
    """Until the next transition; None for the state a finished move ended in, or the current one's
    time so far when in flight."""


@dataclass(frozen=True, kw_only=True)
class GateRecord:
    """A health gate's verdict on the new nodes, as journaled."""

    at: str
    passed: list[str]
    failed: dict[str, str]
    summary: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    """Each node's health (``node``, ``ok``, ``status``, ``reasons``) as `health` prints it, without the
    checks."""


@dataclass(frozen=True, kw_only=True)
class MoveDetail:
    """One move as `rebalance show` prints it."""

    move: MoveSummary
    source: NodeGroupRef
    """The node group giving the nodes (with its Auto Scaling group's name)."""
    dest: NodeGroupRef
    """The node group receiving them."""
    instance_type: str
    victims: list[dict[str, Any]]
    """instance_id, busy, reason: the nodes released, and why each was picked."""
    acquired: list[str]
    """Instances launched in the destination."""
    timeline: list[StateSpan]
    gates: list[GateRecord]
    rollback_reason: str | None = None
    events: int = 0
    """How many events the journal holds for it."""
    notes: list[str] = field(default_factory=list)


def _summary(op: Operation, events: list[Event], now_ns: int) -> MoveSummary:
    plan = op.body.get("plan", {})
    finished = op.state in TERMINAL
    started = events[0].at_ns if events else None
    end = events[-1].at_ns if finished and events else now_ns
    return MoveSummary(op_id=op.op_id, state=str(op.state), pool=plan.get("pool", "?"),
                       from_role=plan.get("from_role", "?"), to_role=plan.get("to_role", "?"),
                       nodes=int(plan.get("nodes", 0)), started_at=iso(started) if started else None,
                       duration_s=round((end - started) / 1e9, 1) if started else None, finished=finished)


def list_moves(journal: Journal, *, limit: int = 20, now_ns: int | None = None) -> list[MoveSummary]:
    """The most recent ``limit`` moves, newest first (op ids begin with their UTC start time)."""
    if limit < 1:
        raise BadInputError(f"--limit {limit}: expected 1 or more")
    now = now_ns or time.time_ns()
    ops = sorted(journal.list_ops(), key=lambda o: o.op_id, reverse=True)[:limit]
    return [_summary(op, journal.events(op.op_id), now) for op in ops]


def _timeline(events: list[Event], finished: bool, now_ns: int) -> list[StateSpan]:
    steps = [e for e in events if e.event_type == "transition"]
    if events and (not steps or steps[0].state != "PLANNED"):
        steps.insert(0, Event(event_type="transition", state="PLANNED", step="", detail={}, at_ns=events[0].at_ns))
    spans = []
    for i, e in enumerate(steps):
        last = i == len(steps) - 1
        end = None if last and finished else (now_ns if last else steps[i + 1].at_ns)
        spans.append(StateSpan(state=e.state, entered_at=iso(e.at_ns), offset_s=round((e.at_ns - steps[0].at_ns) / 1e9, 2),
                               duration_s=None if end is None else round((end - e.at_ns) / 1e9, 2)))
    return spans


def _gate(event: Event) -> GateRecord:
    verdict = event.detail["result"]
    passed, failed = list(verdict.get("passed", [])), dict(verdict.get("failed", {}))
    # Moves journaled before verdicts carried each node: derived from what passed and what failed.
    nodes = verdict.get("nodes") or [
        {"node": n, "ok": n in passed, "status": "PASS" if n in passed else "FAIL",
         "reasons": [] if n in passed else str(failed.get(n, "")).split("; ")} for n in dict.fromkeys([*passed, *failed])]
    return GateRecord(at=iso(event.at_ns), passed=passed, failed=failed, summary=str(verdict.get("summary", "")),
                      nodes=list(nodes))


def show_move(journal: Journal, op_id: str, *, now_ns: int | None = None) -> MoveDetail:
    op = journal.load(op_id)
    if op is None:
        raise BadInputError(f"rebalance {op_id!r}: no such move in journal table {journal.table}",
                            "list the moves with `gpufleet rebalance ls`")
    now = now_ns or time.time_ns()
    events = journal.events(op_id)
    move = _summary(op, events, now)
    plan = op.body.get("plan", {})
    progress = op.body.get("progress", {})
    gates = [_gate(e) for e in events if e.event_type == "result" and e.detail.get("call") == "health_gate"
             and isinstance(e.detail.get("result"), dict)]
    return MoveDetail(move=move, source=NodeGroupRef.of_plan(plan, "source"), dest=NodeGroupRef.of_plan(plan, "dest"),
                      instance_type=plan.get("instance_type", "?"),
                      victims=[{"instance_id": v["instance_id"], "busy": v["busy"], "reason": v["reason"]}
                               for v in plan.get("victims", [])],
                      acquired=list(progress.get("acquired", [])), timeline=_timeline(events, move.finished, now),
                      gates=gates, rollback_reason=progress.get("rollback_reason") or None, events=len(events))


def journal_of(inventory: FleetInventory, profile: str | None = None) -> Journal:
    """The journal table of the platform account, through the one AWS translator."""
    from gpufleet.automation.aws import AwsAccess

    access = AwsAccess(inventory, operation="rebalance history", profile=profile)
    ddb = access.client(inventory.platform_stack, "dynamodb", passthrough=CONTROL_FLOW)
    return Journal(ddb, inventory.journal_table)

"""When a Capacity Block's give-back cannot wait for the move in flight in its pool.

The decision orders the give-back of a block's training (``decide._deadline``) at the last pass
that still lets it drain before EC2 starts terminating (the block's end less 30 minutes). A move
already in flight holds the pool's one lease; waiting for it costs at least one more pass, so the
give-back would start after ``termination - drain_minutes``: then it pre-empts the move
(``rebalance/preempt.py``): one that has terminated no victim is cancelled through the engine, one
past that point finishes and the give-back follows.
"""

from __future__ import annotations

import datetime as dt

from gpufleet.automation.rebalance.journal import Journal, Operation
from gpufleet.automation.rebalance.plan import MovePlan
from gpufleet.automation.rebalance.preempt import cancellable
from gpufleet.automation.rebalance.reservation import RESERVATION
from gpufleet.automation.schedule.model import Deadline

PASS = dt.timedelta(minutes=1)
"""The scheduler's period: a wait for the move in flight lasts at least this long."""


def preempt_reason(now: dt.datetime, deadline: Deadline, drain_minutes: float, journal: Journal,
                   flying: Operation) -> str | None:
    """Why the give-back of a block's training at ``now`` must pre-empt ``flying`` (None: it may wait,
    or ``flying`` cannot be cancelled)."""
    plan = MovePlan.from_dict(flying.body["plan"])
    if plan.from_role == "training" and plan.to_role == RESERVATION:
        return None  # a give-back already: nothing to pre-empt
    termination = deadline.termination.astimezone(dt.UTC)
    latest = termination - dt.timedelta(minutes=drain_minutes)
    if now + PASS < latest or not cancellable(journal, flying):
        return None
    return (f"waiting would start the give-back after {latest:%H:%M} UTC, too late to drain "
            f"({drain_minutes:g} min) before EC2 terminates the block from {termination:%H:%M} UTC")


def nodes_back(flying: Operation) -> int:
    """Training nodes a cancelled ``flying`` leaves in training beyond what the decision counted
    (the decision counts a move's victims as gone while it is leaving)."""
    plan = MovePlan.from_dict(flying.body["plan"])
    return plan.nodes if plan.from_role == "training" else 0

"""Newcomers that failed their gate, read from the journal.

A replacement whose newcomer fails the gate ends ROLLED_BACK with ``gate_failed`` in its body and
the newcomer drained ``gpufleet gate failed`` (execute.py); the next pass replaces that node through
the same path and budget. Each such operation replaced the instance before it, so the journal holds
the run: the newcomer of an operation whose own node was a newcomer that failed, and so on. A node
at the end of a run of ``HealBudget.gate_failures_in_a_row`` is reported instead of replaced again
(decide.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gpufleet.automation.heal.decide import NodeObservation
from gpufleet.automation.rebalance.journal import Operation
from gpufleet.automation.rebalance.state import MoveState


def failed_newcomers(ops: Sequence[Operation]) -> dict[str, Operation]:
    """Instance id of each newcomer that failed its gate -> the operation that launched it."""
    out: dict[str, Operation] = {}
    for op in ops:
        if op.state is MoveState.ROLLED_BACK and op.body.get("gate_failed"):
            for iid in op.body.get("replaced_by") or ():
                out[iid] = op
    return out


def run_length(instance_id: str, failed: dict[str, Operation]) -> int:
    """How many newcomers in a row, ending with ``instance_id``, failed their gate."""
    n, iid = 0, instance_id
    for _ in range(len(failed) + 1):  # each step walks back one operation: the run ends within them
        op = failed.get(iid)
        if op is None:
            break
        n, iid = n + 1, op.body.get("instance_id") or ""
    return n


def with_gate_failures(observations: Sequence[NodeObservation], ops: Sequence[Operation]) -> list[NodeObservation]:
    """The observations, each failed newcomer's with the length of its run."""
    failed = failed_newcomers(ops)
    return [dataclasses.replace(o, gate_failures=run_length(o.instance_id, failed))
            if o.instance_id in failed else o for o in observations]

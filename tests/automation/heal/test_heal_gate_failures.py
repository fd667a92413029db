"""A newcomer that failed its gate: replaced through the same path and budget, and the last of a
run of them reported instead of replaced again (the run read from the journal's operations)."""

from __future__ import annotations

import pytest

from gpufleet.automation.heal.decide import HealBudget, NodeObservation, PastAction, decide
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.gate_failures import failed_newcomers, run_length, with_gate_failures
from gpufleet.automation.heal.observe import GATE_FAILED_REASON, reason_signals
from gpufleet.automation.rebalance.journal import Operation
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import BadInputError
from tests.automation.heal.test_heal_decide import NOW, G, action_of, groups, healthy, obs


def op(n: int, old: str, new: str, state: MoveState = MoveState.ROLLED_BACK, gate_failed: str = "quick: fail") -> Operation:
    body = {"kind": "heal", "action": "replace", "instance_id": old, "replaced_by": [new]}
    if gate_failed:
        body["gate_failed"] = gate_failed
    return Operation(op_id=f"heal-{n}", state=state, version=1, body=body)


def test_the_drain_reason_is_the_gate_failed_signal():
    assert reason_signals(f"{GATE_FAILED_REASON}: heal-1: quick: gpu: row remapping failed") == ("gate_failed",)
    assert reason_signals(f"{GATE_FAILED_REASON}: heal-1: x [slurm@2026-12-01T20:00:00]") == ("gate_failed",)


def test_the_run_follows_each_failed_newcomer_back_to_the_faulty_node():
    ops = [op(1, "i-a", "i-b"), op(2, "i-b", "i-c"), op(3, "i-c", "i-d"),
           op(4, "i-x", "i-y", state=MoveState.DONE, gate_failed="")]
    failed = failed_newcomers(ops)
    assert sorted(failed) == ["i-b", "i-c", "i-d"]
    assert [run_length(i, failed) for i in ("i-a", "i-b", "i-c", "i-d", "i-y")] == [0, 1, 2, 3, 0]


def test_a_newcomer_that_passed_breaks_the_run():
    # i-b failed, was replaced by i-c which passed (DONE); i-c later faulted and its newcomer i-d failed.
    ops = [op(1, "i-a", "i-b"), op(2, "i-b", "i-c", state=MoveState.DONE, gate_failed=""), op(3, "i-c", "i-d")]
    assert run_length("i-d", failed_newcomers(ops)) == 1


def test_a_failed_newcomer_is_replaced_within_the_budget_until_the_run_is_reported():
    budget = HealBudget(per_group_per_hour=5, per_pool_per_hour=5, gate_failures_in_a_row=3)
    for run, expected in ((1, HealAction.REPLACE), (2, HealAction.REPLACE), (3, HealAction.LEAVE)):
        plan = decide([obs("new", "gate_failed", gate_failures=run), *healthy(7)], [], budget, groups(), NOW)
        d = action_of(plan, "new")
        assert d.action is expected and d.wanted is HealAction.REPLACE, (run, d)
        if expected is HealAction.LEAVE:
            assert d.reason.startswith("held: 3 newcomers in a row failed their gate (limit 3)")
            (line,) = plan.patterns
            assert line.startswith(f"group {G}: 3 newcomers in a row failed their gate, the last new")
        else:
            assert not plan.patterns


def test_the_replacement_that_launched_it_counts_in_the_budget():
    new = obs("new", "gate_failed", gate_failures=1)
    recent = [PastAction(instance_id="i-old", group=G, pool="h100", action=HealAction.REPLACE, at=NOW - 60)]
    d = action_of(decide([new, *healthy(7)], recent, HealBudget(), groups(), NOW), "new")
    assert d.action is HealAction.LEAVE and d.reason.startswith("held: budget: 1 replacement(s) in")


def test_observations_carry_their_run():
    ops = [op(1, "i-a", "i-b"), op(2, "i-b", "i-c")]
    seen = [NodeObservation(node="c", instance_id="i-c", group=G, pool="h100", signals=("gate_failed",)),
            NodeObservation(node="z", instance_id="i-z", group=G, pool="h100")]
    assert [o.gate_failures for o in with_gate_failures(seen, ops)] == [2, 0]


def test_the_limit_is_validated():
    with pytest.raises(BadInputError, match="gate_failures_in_a_row = 0"):
        HealBudget(gate_failures_in_a_row=0)

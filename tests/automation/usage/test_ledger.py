"""The ledger's arithmetic, checked against figures worked out by hand, and its one invariant:
for every pool and hour the classes add up to the reservation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.automation.usage.ledger import HOUR_S, compute, reconcile
from gpufleet.automation.usage.report import summarise, to_csv
from gpufleet.automation.usage.spans import MovePhase, NodeSpan, PoolSlots
from gpufleet.infra.errors import BadInputError

T0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z, on an hour boundary
POOL = PoolSlots(name="h100", owner_stack="platform", owner_account_id="111111111111",
                 instance_type="p5.48xlarge", gpus_per_node=8, slots=2, kind="odcr",
                 price_usd_per_node_hour=10.0, reservation_arn="arn:aws:ec2:us-east-1:111111111111:capacity-reservation/cr-1")


def node(iid: str, role: str, start: float, end: float | None, **kw) -> NodeSpan:
    return NodeSpan(instance_id=iid, stack=role, account_id={"training": "222222222222"}.get(role, "333333333333"),
                    role=role, pool="h100", start=start, end=end, **kw)


def by_class(ledger) -> dict[str, float]:
    return {line.key["class"]: round(line.gpu_hours, 6) for line in summarise(ledger, "class")}


def test_a_move_by_hand():
    """Two hours, two slots. Training holds both nodes; at 0:30 one is asked to drain (10 min), is
    gone at 0:40; its slot is empty for 5 minutes; the inference node boots and gates for 15 minutes
    (0:45-1:00) and serves to the end."""
    nodes = [node("i-t1", "training", T0 - 600, None),
             node("i-t2", "training", T0 - 600, T0 + 2400),
             node("i-n1", "inference", T0 + 2700, None)]
    phases = [MovePhase(op_id="op-1", instance_id="i-t2", step="draining", start=T0 + 1800, end=T0 + 2400),
              MovePhase(op_id="op-1", instance_id="i-n1", step="booting", start=T0 + 2700, end=T0 + 3600)]
    ledger = compute(T0, T0 + 2 * HOUR_S, [POOL], nodes, phases)
    assert reconcile(ledger, [POOL]) == []
    # training: i-t1 2 h + i-t2 30 min = 2.5 node-hours; moving: 10 + 15 min; idle: 5 min; inference: 1 h.
    assert by_class(ledger) == {"training": 20.0, "moving": pytest.approx(8 * 25 / 60),
                                "idle": pytest.approx(8 * 5 / 60), "inference": 8.0}
    moves = summarise(ledger, "move")
    assert {(m.key["op_id"], m.key["stack"]): round(m.gpu_hours, 6) for m in moves} == {
        ("op-1", "training"): round(8 * 10 / 60, 6), ("op-1", "inference"): 2.0}
    idle = [r for r in ledger.rows if r.klass == "idle"]
    assert [(r.stack, r.account_id, r.hour) for r in idle] == [("platform", "111111111111", T0)]
    assert sum(r.cost_usd for r in ledger.rows) == pytest.approx(2 * 2 * 10.0)


def test_nodes_beyond_the_reservation_are_reported_not_hidden():
    nodes = [node(f"i-{i}", "training", T0, None) for i in range(3)]
    ledger = compute(T0, T0 + HOUR_S, [POOL], nodes)
    assert ledger.over == {("h100", T0): HOUR_S}
    assert "idle" not in by_class(ledger)
    assert reconcile(ledger, [POOL]) == []


def test_a_capacity_block_bills_only_inside_its_window():
    block = PoolSlots(**{**POOL.__dict__, "kind": "capacity-block", "start": T0 + 1800, "end": T0 + 5400})
    ledger = compute(T0, T0 + 3 * HOUR_S, [block], [])
    assert by_class(ledger) == {"idle": 16.0}
    assert sorted({r.hour for r in ledger.rows}) == [T0, T0 + HOUR_S]


def test_an_empty_period_has_no_nodes_but_the_idle_reservation():
    ledger = compute(T0, T0 + HOUR_S, [POOL], [])
    assert by_class(ledger) == {"idle": 16.0}
    on_demand = PoolSlots(**{**POOL.__dict__, "kind": "on-demand"})
    assert compute(T0, T0 + HOUR_S, [on_demand], []).rows == []


def test_unknown_grouping_is_bad_input():
    with pytest.raises(BadInputError, match="--by 'team'"):
        summarise(compute(T0, T0 + HOUR_S, [POOL], []), "team")


def test_csv_names_focus_columns_and_marks_unused_reserved_hours():
    ledger = compute(T0, T0 + HOUR_S, [POOL], [node("i-t1", "training", T0, None)])
    lines = to_csv(ledger, [POOL]).splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["ChargePeriodStart", "ChargePeriodEnd", "SubAccountId"]
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert {(r["x_WorkloadClass"], r["CommitmentDiscountStatus"], r["SubAccountId"]) for r in rows} == {
        ("training", "Used", "222222222222"), ("idle", "Unused", "111111111111")}
    assert {r["ChargePeriodStart"] for r in rows} == {"2025-12-01T00:00:00Z"}


spans = st.lists(st.tuples(st.sampled_from(["training", "inference"]), st.floats(-3600, 4 * 3600),
                           st.floats(0, 3 * 3600), st.booleans(), st.floats(0, 1), st.floats(0, 1)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(spans)
def test_the_classes_always_add_up_to_the_reservation(lives):
    nodes, phases = [], []
    for i, (role, start, length, moved, a, b) in enumerate(lives):
        nodes.append(node(f"i-{i}", role, T0 + start, T0 + start + length))
        if moved:
            lo, hi = sorted((start + a * length, start + b * length))
            phases.append(MovePhase(op_id=f"op-{i}", instance_id=f"i-{i}", step="draining",
                                    start=T0 + lo, end=T0 + hi))
    ledger = compute(T0, T0 + 3 * HOUR_S, [POOL], nodes, phases)
    assert reconcile(ledger, [POOL], tolerance_s=1e-3) == []

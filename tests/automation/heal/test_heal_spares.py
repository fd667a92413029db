"""The healer's pure decision with hot spares: a replacement swaps in a held spare of its own
group, one spare per replacement, never a faulty or unreachable spare, never past the budget."""

from __future__ import annotations

from gpufleet.automation.heal.decide import GroupState, HealBudget, NodeObservation, decide
from gpufleet.automation.heal.decisions import HealAction

NOW = 1_800_000_000.0
G = "training/train-a"
H = "training/train-b"


def obs(name: str, *signals: str, group: str = G, **kw) -> NodeObservation:
    return NodeObservation(node=name, instance_id=f"i-{name:0>17}", group=group, pool="h100", signals=signals, **kw)


def healthy(n: int, group: str = G) -> list[NodeObservation]:
    return [obs(f"ok{group[-1]}{i}", group=group) for i in range(n)]


GROUPS = {G: GroupState(in_service=10, min_nodes=0), H: GroupState(in_service=10, min_nodes=0)}


def of(plan, node: str):
    return next(d for d in plan.decisions if d.node == node)


def test_a_replacement_swaps_in_the_groups_spare():
    plan = decide([obs("bad", "xid:64"), obs("spare1", spare=True), *healthy(8)], [], HealBudget(), GROUPS, NOW)
    d = of(plan, "bad")
    assert d.action is HealAction.REPLACE and d.swap_with == "spare1" and d.swap_instance == obs("spare1").instance_id
    assert d.reason.endswith("; swap in spare spare1") and d.to_dict()["swap_with"] == "spare1"
    spare = of(plan, "spare1")
    assert spare.action is HealAction.LEAVE and spare.reason == "hot spare (held)" and spare.swap_with == ""


def test_no_spare_no_swap_and_a_reboot_never_takes_one():
    plan = decide([obs("bad", "xid:64"), obs("flaky", "xid:79"), *healthy(8)], [], HealBudget(), GROUPS, NOW)
    assert of(plan, "bad").swap_with == "" and of(plan, "bad").to_dict()["swap_with"] is None
    with_spare = decide([obs("flaky", "xid:79"), obs("spare1", spare=True), *healthy(8)], [], HealBudget(), GROUPS, NOW)
    assert of(with_spare, "flaky").action is HealAction.REBOOT and of(with_spare, "flaky").swap_with == ""


def test_a_spare_of_another_group_is_not_used():
    plan = decide([obs("bad", "xid:64"), obs("spare1", spare=True, group=H), *healthy(4), *healthy(4, H)],
                  [], HealBudget(), GROUPS, NOW)
    assert of(plan, "bad").action is HealAction.REPLACE and of(plan, "bad").swap_with == ""


def test_one_spare_per_replacement_in_node_order():
    budget = HealBudget(per_group_per_hour=2, per_pool_per_hour=2, pattern_fraction=1.0)
    plan = decide([obs("bad2", "xid:64"), obs("bad1", "xid:64"), obs("spare1", spare=True), *healthy(8)], [],
                  budget, GROUPS, NOW)
    assert (of(plan, "bad1").swap_with, of(plan, "bad2").swap_with) == ("spare1", "")
    assert {of(plan, n).action for n in ("bad1", "bad2")} == {HealAction.REPLACE}


def test_a_faulty_or_unreachable_spare_is_no_spare():
    faulty = decide([obs("bad", "xid:64"), obs("spare1", "xid:64", spare=True), *healthy(8)], [],
                    HealBudget(per_group_per_hour=2, per_pool_per_hour=2, pattern_fraction=1.0), GROUPS, NOW)
    assert of(faulty, "bad").swap_with == "" and of(faulty, "spare1").swap_with == ""
    gone = decide([obs("bad", "xid:64"), obs("spare1", spare=True, not_ready_s=30.0), *healthy(8)], [],
                  HealBudget(), GROUPS, NOW)
    assert of(gone, "bad").swap_with == ""


def test_a_replacement_held_by_the_budget_takes_no_spare():
    plan = decide([obs("bad", "xid:64"), obs("spare1", spare=True), *healthy(8)], [],
                  HealBudget(per_group_per_hour=0), GROUPS, NOW)
    d = of(plan, "bad")
    assert d.action is HealAction.LEAVE and d.wanted is HealAction.REPLACE and d.swap_with == ""

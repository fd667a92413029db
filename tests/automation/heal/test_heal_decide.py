"""The healer's pure decision: table lookups, escalation after a reboot, the fleet-wide pattern,
the replacement budget per group and pool, and the group's floor."""

from __future__ import annotations

import pytest

from gpufleet.automation.heal.decide import (
    GroupState,
    HealBudget,
    NodeObservation,
    PastAction,
    decide,
)
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.infra.errors import BadInputError

NOW = 1_800_000_000.0
G = "training/train-a"
H = "training/train-b"


def obs(name: str, *signals: str, group: str = G, pool: str = "h100", **kw) -> NodeObservation:
    return NodeObservation(node=name, instance_id=f"i-{abs(hash(name)) % 16**12:012x}", group=group, pool=pool,
                           signals=signals, **kw)


def healthy(n: int, group: str = G, pool: str = "h100") -> list[NodeObservation]:
    return [obs(f"ok{i}", group=group, pool=pool) for i in range(n)]


def groups(in_service: int = 8, floor: int = 0) -> dict[str, GroupState]:
    return {G: GroupState(in_service=in_service, min_nodes=floor), H: GroupState(in_service=in_service, min_nodes=floor)}


def action_of(plan, node: str):
    return next(d for d in plan.decisions if d.node == node)


@pytest.mark.parametrize(("signal", "expected"), [
    ("xid:13", HealAction.LEAVE), ("xid:43", HealAction.LEAVE), ("xid:79", HealAction.REBOOT),
    ("xid:95", HealAction.REBOOT), ("xid:64", HealAction.REPLACE), ("row_remap_failure", HealAction.REPLACE),
    ("ec2_status_failed", HealAction.REPLACE), ("replace_requested", HealAction.REPLACE),
    ("nvlink_error", HealAction.REBOOT), ("xid:4242", HealAction.LEAVE),
])
def test_each_signal_maps_through_the_table(signal, expected):
    plan = decide([obs("bad", signal), *healthy(7)], [], HealBudget(), groups(), NOW)
    d = action_of(plan, "bad")
    assert d.action is expected and d.wanted is expected
    assert d.reason.startswith(signal)
    assert {x.action for x in plan.decisions if x.node != "bad"} == {HealAction.LEAVE}


def test_the_most_drastic_signal_wins():
    d = action_of(decide([obs("bad", "xid:13", "xid:79", "xid:64"), *healthy(7)], [], HealBudget(), groups(), NOW), "bad")
    assert d.action is HealAction.REPLACE and d.reason.startswith("xid:64")


def test_not_ready_counts_only_once_it_has_lasted():
    short = decide([obs("slow", not_ready_s=5 * 60), *healthy(7)], [], HealBudget(), groups(), NOW)
    assert action_of(short, "slow").action is HealAction.LEAVE
    assert "under the table's 10 min" in action_of(short, "slow").reason
    long = decide([obs("gone", not_ready_s=11 * 60), *healthy(7)], [], HealBudget(), groups(), NOW)
    assert action_of(long, "gone").action is HealAction.REPLACE


def test_a_fault_back_after_its_reboot_is_replaced():
    node = obs("bad", "xid:79")
    rebooted = PastAction(instance_id=node.instance_id, group=G, pool="h100", action=HealAction.REBOOT, at=NOW - 600)
    d = action_of(decide([node, *healthy(7)], [rebooted], HealBudget(), groups(), NOW), "bad")
    assert d.action is HealAction.REPLACE and d.reason.startswith("reboot_failed (xid:79")
    long_ago = PastAction(instance_id=node.instance_id, group=G, pool="h100", action=HealAction.REBOOT, at=NOW - 7200)
    assert action_of(decide([node, *healthy(7)], [long_ago], HealBudget(), groups(), NOW), "bad").action \
        is HealAction.REBOOT


def test_a_node_rebooting_is_left_alone():
    d = action_of(decide([obs("bad", "xid:79", rebooting=True), *healthy(7)], [], HealBudget(), groups(), NOW), "bad")
    assert d.action is HealAction.LEAVE and d.reason == "reboot under way"


def test_a_third_of_a_pool_failing_is_reported_not_acted_on():
    nodes = [obs("a", "xid:79"), obs("b", "xid:64"), obs("c", "xid:95"), *healthy(5)]
    plan = decide(nodes, [], HealBudget(), groups(), NOW)
    assert not plan.acting()
    assert len(plan.patterns) == 1 and "3 of 8 nodes failing at once (a, b, c)" in plan.patterns[0]
    assert action_of(plan, "b").wanted is HealAction.REPLACE
    assert action_of(plan, "b").reason.startswith("held: fleet-wide pattern in pool h100")
    # Two of eight is no pattern; the other pool is never held by this one.
    plan = decide([obs("a", "xid:79"), obs("b", "xid:95"), *healthy(6),
                   obs("x", "xid:79", group=H, pool="a100")], [], HealBudget(), groups(), NOW)
    assert not plan.patterns and {d.node for d in plan.acting()} == {"a", "b", "x"}


def test_an_operators_request_neither_makes_nor_is_held_by_a_pattern():
    plan = decide([obs("a", "xid:79"), obs("b", "replace_requested"), *healthy(1)], [], HealBudget(), groups(), NOW)
    assert not plan.patterns and {d.node for d in plan.acting()} == {"a", "b"}
    plan = decide([obs("a", "xid:79"), obs("c", "xid:95"), obs("b", "replace_requested"), *healthy(1)], [],
                  HealBudget(), groups(), NOW)
    assert len(plan.patterns) == 1 and [d.node for d in plan.acting()] == ["b"]


def test_the_budget_per_group_and_per_pool():
    nodes = [obs("a", "xid:64"), obs("b", "xid:64"), *healthy(10),
             obs("c", "xid:64", group=H), *healthy(10, group=H)]
    plan = decide(nodes, [], HealBudget(per_group_per_hour=1, per_pool_per_hour=5), groups(12), NOW)
    assert [d.node for d in plan.acting()] == ["a", "c"]
    assert action_of(plan, "b").reason.startswith(f"held: budget: 1 replacement(s) in {G} in the last 1 h (limit 1)")
    past = [PastAction(instance_id="i-old", group=H, pool="h100", action=HealAction.REPLACE, at=NOW - 1800)]
    plan = decide(nodes, past, HealBudget(per_group_per_hour=5, per_pool_per_hour=2), groups(12), NOW)
    assert [d.node for d in plan.acting()] == ["a"]
    assert "in pool h100 in the last 1 h (limit 2)" in action_of(plan, "b").reason
    old = [PastAction(instance_id="i-old", group=G, pool="h100", action=HealAction.REPLACE, at=NOW - 3601)]
    plan = decide(nodes, old, HealBudget(per_group_per_hour=1, per_pool_per_hour=5), groups(12), NOW)
    assert [d.node for d in plan.acting()] == ["a", "c"]


def test_never_below_the_floor():
    nodes = [obs("a", "xid:64"), obs("b", "xid:64"), *healthy(6)]
    plan = decide(nodes, [], HealBudget(per_group_per_hour=9, per_pool_per_hour=9), groups(8, floor=7), NOW)
    assert [d.node for d in plan.acting()] == ["a"]
    assert "floor: training/train-a would have 6 InService instance(s), under its floor of 7" \
        in action_of(plan, "b").reason
    at_floor = decide(nodes, [], HealBudget(per_group_per_hour=9, per_pool_per_hour=9), groups(8, floor=8), NOW)
    assert not at_floor.acting()


def test_requests_go_first_through_the_same_budget():
    nodes = [obs("a", "xid:64"), obs("z", "replace_requested"), *healthy(10)]
    plan = decide(nodes, [], HealBudget(per_group_per_hour=1), groups(12), NOW)
    assert [d.node for d in plan.acting()] == ["z"]
    assert "budget" in action_of(plan, "a").reason


def test_a_node_without_an_instance_cannot_be_replaced():
    node = NodeObservation(node="ghost", instance_id="", group=G, pool="h100", signals=("xid:64",))
    d = action_of(decide([node, *healthy(7)], [], HealBudget(), groups(), NOW), "ghost")
    assert d.action is HealAction.LEAVE and "no EC2 instance id" in d.reason


def test_a_bad_budget_is_refused():
    with pytest.raises(BadInputError):
        HealBudget(per_group_per_hour=-1)
    with pytest.raises(BadInputError):
        HealBudget(pattern_fraction=0)

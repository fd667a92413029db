"""Blast radius of health --replace (pure selection), and the pass that replaces nothing when a
check fails everywhere. Before the bounds, a check failing on every node (an FSx outage) had
every node of both accounts terminated in one pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpufleet.automation.health.blast import Bounds, allowance, select
from gpufleet.automation.health.replace import HealthArgs
from gpufleet.infra.errors import BadInputError


@dataclass(frozen=True)
class T:
    instance_id: str
    stack: str
    asg_name: str
    pool: str


def fleet(train: int = 8, serve: int = 4) -> list[T]:
    return ([T(f"i-t{n}", "training", "train-asg", "h100") for n in range(train)]
            + [T(f"i-s{n}", "inference", "serve-asg", "h100") for n in range(serve)])


BOUNDS = Bounds(max_per_group=0.25, max_per_pool=0.25, both_accounts=False, fleet_problem_fraction=0.5)


def test_a_check_failing_on_most_nodes_is_a_fleet_problem_and_replaces_nothing():
    nodes = fleet()
    picked = select(nodes, [t.instance_id for t in nodes], {}, BOUNDS)
    assert picked.chosen == () and picked.fleet_problem and "12 of 12" in picked.fleet_problem
    assert set(picked.deferred) == {t.instance_id for t in nodes}
    assert select(nodes, ["i-t0"], {}, BOUNDS).fleet_problem is None  # one node is a node problem


def test_at_most_a_fraction_of_a_group_and_of_a_pool_per_pass():
    nodes = fleet()
    picked = select(nodes, ["i-t0", "i-t1", "i-t2", "i-t3"], {}, BOUNDS)
    assert picked.chosen == ("i-t0", "i-t1")  # 25 % of 8
    assert picked.deferred == ("i-t2", "i-t3") and len(picked.reasons) == 2
    pool_bound = Bounds(max_per_group=8, max_per_pool=3, both_accounts=True, fleet_problem_fraction=0.5)
    assert len(select(nodes, ["i-t0", "i-t1", "i-t2", "i-s0", "i-s1"], {}, pool_bound).chosen) == 3
    assert allowance(0.1, 4) == 1 and allowance(2, 100) == 2 and allowance(0.5, 9) == 4


def test_never_below_a_groups_floor():
    nodes = fleet(train=4)
    wide = Bounds(max_per_group=4, max_per_pool=12, both_accounts=False, fleet_problem_fraction=1.0)
    picked = select(nodes, ["i-t0", "i-t1"], {"train-asg": 3}, wide)
    assert picked.chosen == ("i-t0",) and "floor of 3" in picked.reasons[0]


def test_one_account_per_pass_unless_told():
    nodes = fleet()
    picked = select(nodes, ["i-t0", "i-s0"], {}, BOUNDS)
    assert picked.chosen == ("i-t0",) and picked.deferred == ("i-s0",) and "--both-accounts" in picked.reasons[0]
    both = Bounds(max_per_group=0.25, max_per_pool=0.25, both_accounts=True, fleet_problem_fraction=0.5)
    assert select(nodes, ["i-t0", "i-s0"], {}, both).chosen == ("i-t0", "i-s0")


@pytest.mark.parametrize("change", [{"max_per_group": 0}, {"max_per_pool": -1}, {"fleet_problem_fraction": 0}])
def test_bounds_are_checked_before_anything_happens(change):
    with pytest.raises(BadInputError):
        HealthArgs(**change)

"""Hot spares in plan, status and the scheduler: their own column, the plan's cost counts them,
the live ledger takes them out of the training group that holds them, the scheduler never splits them."""

from __future__ import annotations

import datetime as dt

from gpufleet.automation.plan import plan_fleet
from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.model import PoolFleet
from gpufleet.automation.status import NodeGroupStatus, _consumers
from gpufleet.infra.capacity import tally
from gpufleet.infra.contract import PoolOutput
from tests.infra.test_pool_spares import spares
from tests.infra.test_stackfile import fleet


def test_plan_shows_spares_and_bills_them_to_training():
    plan = plan_fleet(fleet(platform=spares(1)))
    h100 = next(p for p in plan.pools if p.name == "h100-use1-az4")
    assert (h100.spares, h100.free) == (1, 0)
    training = next(s for s in plan.stacks if s.role == "training")
    (line,) = [c for c in training.cost_items if c.item.startswith("hot spares of")]
    assert (line.item, line.quantity, line.unit_price_usd) == ("hot spares of h100-use1-az4 (p5.48xlarge)", 1, 55.04)
    # The slot a spare holds is no longer an unused slot on the platform's bill: the total is the same.
    before = plan_fleet(fleet())
    platform = next(s for s in before.stacks if s.role == "platform")
    unused = [c for c in platform.cost_items if c.item.startswith("unused reserved slots of h100")]
    assert [c.quantity for c in unused] == [1]
    assert not [c for c in next(s for s in plan.stacks if s.role == "platform").cost_items
                if c.item.startswith("unused reserved slots of h100")]
    assert plan.totals["cost_per_hour_usd"] == before.totals["cost_per_hour_usd"]


def group(name: str, role: str, desired: int, orchestrator: str, pool: str = "h100") -> NodeGroupStatus:
    return NodeGroupStatus(stack=role, role=role, name=name, pool=pool, instance_type="p5.48xlarge", asg_name=name,
                           desired=desired, live=desired, in_service=desired, healthy=desired, min_nodes=0,
                           max_nodes=8, orchestrator=orchestrator)


def test_status_takes_spares_out_of_the_slurm_training_group_holding_them():
    pool = PoolOutput(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", kind="odcr", count=8, spares=1)
    groups = [group("serve", "inference", 2, "eks"), group("train", "training", 6, "slurm")]
    [usage] = tally([pool], _consumers(groups, {"h100": 1}))
    assert (usage.consumers, usage.spares, usage.free) == ({"inference": 2, "training": 5}, 1, 0)
    # Never below zero: a group emptied by a move holds no spare; the next Slurm group holds it.
    two = [group("a", "training", 0, "slurm"), group("b", "training", 3, "slurm")]
    assert [c.nodes for c in _consumers(two, {"h100": 1})] == [0, 2]


def test_the_scheduler_splits_the_count_less_the_spares():
    from gpufleet.infra.model import PoolSchedule, ScheduleWindow

    window = ScheduleWindow(days=frozenset(range(7)), start=dt.time(0, 0), end=dt.time(23, 59), timezone="UTC",
                            inference_nodes=8)
    schedule = PoolSchedule(pool="p", windows=(window,), inference_nodes_outside=0, training_floor=2)
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    fleet_now = {"p": PoolFleet(pool="p", count=8, spares=1, inference=0, training=7)}
    decision = decide(now, [schedule], fleet_now, (), {}, {})
    (target,) = decision.targets
    assert (target.inference, target.training) == (5, 2)  # 8 - 1 spare - floor 2
    assert any("keeps 1 hot spares" in f for f in decision.findings), decision.findings
    assert sum(m.nodes for m in decision.moves) == 5


def test_a_move_counts_the_spares_held_in_the_slurm_training_group_apart():
    from gpufleet.automation.auto_scaling import GroupObs, InstanceObs
    from gpufleet.automation.inventory import from_doc
    from gpufleet.automation.rebalance.plan import MoveRequest, make_plan, resolve

    group = {"instanceType": "p5.48xlarge", "minNodes": 0, "maxNodes": 8, "initialNodes": 0}
    inventory = from_doc({"version": 1, "stacks": {
        "platform": {"role": "platform", "accountId": "111111111111", "region": "us-east-1", "journalTable": "j",
                     "pools": [{"name": "h100", "instanceType": "p5.48xlarge", "azId": "use1-az4", "count": 8,
                                "kind": "odcr", "spares": 1}]},
        "training": {"role": "training", "accountId": "222222222222", "region": "us-east-1", "nodeGroups": [
            {**group, "name": "train", "pool": "h100", "asgName": "train-asg", "orchestrator": "slurm"}]},
        "inference": {"role": "inference", "accountId": "333333333333", "region": "us-east-1", "nodeGroups": [
            {**group, "name": "serve", "pool": "h100", "asgName": "serve-asg", "orchestrator": "eks"}]},
    }}, "(test)")

    def obs(name: str, n: int) -> GroupObs:
        return GroupObs(asg_name=name, desired=n, min_size=0, max_size=8, instances=tuple(
            InstanceObs(instance_id=f"i-{name[:5]}{k}", lifecycle_state="InService") for k in range(n)))

    req = MoveRequest(from_role="training", to_role="inference", nodes=1)
    binding = resolve(inventory, req)
    # train-asg runs 6: 5 training nodes and the pool's spare; serve 2; 8 slots in all, none free.
    plan = make_plan(binding, req, {"train-asg": obs("train-asg", 6), "serve-asg": obs("serve-asg", 2)}, [])
    assert (plan.before, plan.after, plan.free_before, plan.free_after) == (
        {"training": 5, "inference": 2}, {"training": 4, "inference": 3}, 0, 0)


def test_bad_spares_exit_2_naming_file_key_and_value_before_anything_renders(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from gpufleet.automation.cli.main import app
    from tests.conftest import REPO

    for f in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    platform = tmp_path / "Pulumi.platform.yaml"
    text = platform.read_text()
    anchor = "      shareWith: [training, inference]\n"
    assert anchor in text
    platform.write_text(text.replace(anchor, anchor + "      spares: 8\n", 1))
    result = CliRunner().invoke(app, ["plan", "--stacks-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert f"{platform}: gpufleet:pools[0].spares = 8: a pool of 8 nodes keeps fewer spares than that" in " ".join(
        result.output.split()), result.output


def test_a_move_never_takes_a_held_spare():
    import pytest

    from gpufleet.automation.auto_scaling import GroupObs, InstanceObs
    from gpufleet.automation.orchestrators.base import NodeWork
    from gpufleet.automation.rebalance.plan import MoveRequest, make_plan, resolve
    from gpufleet.infra.errors import BadInputError
    from tests.automation.rebalance.test_rebalance_plan import inventory

    def obs(name: str, n: int) -> GroupObs:
        return GroupObs(asg_name=name, desired=n, min_size=0, max_size=8, instances=tuple(
            InstanceObs(instance_id=f"i-{name[:5]}{k}", lifecycle_state="InService") for k in range(n)))

    req = MoveRequest(from_role="training", to_role="inference", nodes=1)
    binding = resolve(inventory(), req)
    # The spare is idle, the cheapest node to lose: it is still not the one taken.
    work = [NodeWork(instance_id="i-train0", spare=True), NodeWork(instance_id="i-train1", busy=True, last_checkpoint=5.0)]
    plan = make_plan(binding, req, {"train-asg": obs("train-asg", 2), "serve-asg": obs("serve-asg", 2)}, work)
    assert [v.instance_id for v in plan.victims] == ["i-train1"]
    with pytest.raises(BadInputError, match=r"has only 1 InService nodes \(desired 2; 1 more held as hot spares\)"):
        make_plan(binding, MoveRequest(from_role="training", to_role="inference", nodes=2),
                  {"train-asg": obs("train-asg", 2), "serve-asg": obs("serve-asg", 2)}, work)

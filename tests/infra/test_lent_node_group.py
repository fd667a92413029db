"""A training node group in a pool's lent slots (issue 15, lending): validated like every key, and
rendered with a launch template that targets the interruptible reservation by id."""

from __future__ import annotations

import pytest

from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.schedule.reconcile import fleet_of
from gpufleet.infra.contract import StackOutputs
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.offline.render import render_fleet
from gpufleet.infra.stack_config import config_of
from gpufleet.infra.stackfile import check_fleet, parse_stack
from tests.infra.test_stackfile import fleet, raw, rejects

LENT_ID = "cr-0f1e2d3c4b5a69788"
LENT_GROUP = {"name": "train-h100-lent", "pool": "h100-use1-az4", "instanceType": "p5.48xlarge", "initialNodes": 0,
              "minNodes": 0, "maxNodes": 4, "lentReservationId": LENT_ID}


def lends(max_nodes: int = 4):
    return lambda config: config["gpufleet:schedule"][0].update(lend={"maxNodes": max_nodes})


def lent_group(**fields):
    return lambda config: config["gpufleet:nodeGroups"].append({**LENT_GROUP, **fields})


def test_a_lent_group_is_read_and_bound():
    specs = fleet(platform=lends(), training=lent_group())
    training = next(s for s in specs if s.name == "training")
    assert [g.lent_reservation_id for g in training.node_groups] == [None, None, LENT_ID]
    ledger = {u.name: u for u in check_fleet(specs)}
    assert ledger["h100-use1-az4"].consumers == {"inference": 2, "training": 5}  # it starts empty


@pytest.mark.parametrize(("fields", "key", "value", "problem"), [
    ({"lentReservationId": "lent-1"}, "lentReservationId", "lent-1", "not a valid capacity reservation id"),
    ({"initialNodes": 1, "maxNodes": 4}, "initialNodes", 1, "starts empty"),
    ({"minNodes": 1, "initialNodes": 0}, "minNodes", 1, "greater than initialNodes"),
])
def test_bad_lent_groups_name_file_key_and_value(fields, key, value, problem):
    config = raw("training")
    lent_group(**fields)(config)
    rejects(config, f"gpufleet:nodeGroups[2].{key}", value, problem)


def test_only_training_runs_in_lent_slots():
    config = raw("inference")
    config["gpufleet:nodeGroups"].append({**LENT_GROUP, "name": "serve-lent"})
    rejects(config, "gpufleet:nodeGroups[1].lentReservationId", LENT_ID, "only training runs in lent slots")


def test_the_pool_must_lend_and_lend_enough():
    with pytest.raises(ConfigError) as caught:
        check_fleet(fleet(training=lent_group()))
    assert (caught.value.source, caught.value.key) == ("stacks/Pulumi.training.yaml",
                                                       "gpufleet:nodeGroups[2].lentReservationId")
    assert "lends nothing" in caught.value.problem
    with pytest.raises(ConfigError) as caught:
        check_fleet(fleet(platform=lends(2), training=lent_group()))
    assert (caught.value.key, caught.value.value) == ("gpufleet:nodeGroups[2].maxNodes", 4)
    assert "lends at most 2" in caught.value.problem


def test_the_lent_group_targets_the_interruptible_reservation():
    platform, training, _ = fleet(platform=lends(), training=lent_group())
    rendered = {r.spec.name: r for r in render_fleet([platform, training], parallel=False)}
    pools = {p["name"]: p for p in rendered["platform"].exports["pools"]}
    stack = rendered["training"]
    lts = {lt.parent.rsplit("::", 1)[1]: lt for lt in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    target = {name: lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"]["capacityReservationId"]
              for name, lt in lts.items()}
    assert target["train-h100-lent"] == LENT_ID
    assert target["train-h100"] == pools["h100-use1-az4"]["reservationId"] != LENT_ID
    asgs = {g.parent.rsplit("::", 1)[1]: g for g in stack.of_type("aws:autoscaling/group:Group")}
    lent = asgs["train-h100-lent"].inputs
    assert (lent["desiredCapacity"], lent["minSize"], lent["maxSize"]) == (0, 0, 4)
    exported = {g["name"]: g for g in stack.exports["nodeGroups"]}
    assert exported["train-h100-lent"]["lentReservationId"] == LENT_ID
    assert exported["train-h100"].get("lentReservationId") is None

    # the contract carries it: moves leave the lent group alone, the scheduler counts it as lent
    inventory = FleetInventory(stacks={name: StackOutputs.from_dict(r.exports, stack=name, source="(rendered)")
                                       for name, r in rendered.items()})
    assert [g.group.name for g in inventory.groups_of("training", "h100-use1-az4")] == ["train-h100", "train-h100-lent"]
    assert [g.group.name for g in inventory.own_groups_of("training", "h100-use1-az4")] == ["train-h100"]
    asg_names = {g.group.name: g.group.asg_name for g in inventory.node_groups}
    split, _ = fleet_of(inventory, [platform.schedule[0]], {asg_names["train-h100"]: 5, asg_names["train-h100-lent"]: 2},
                        [])
    assert (split["h100-use1-az4"].training, split["h100-use1-az4"].lent) == (5, 2)



def test_the_rendered_config_keeps_lend_and_the_lent_group():
    # the program reads the stack file back from config_of: both keys must survive it
    for spec in fleet(platform=lends(), training=lent_group())[:2]:
        assert parse_stack(config_of(spec), name=spec.name, source=spec.source) == spec

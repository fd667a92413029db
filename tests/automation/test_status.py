"""`gpufleet status` against the sandbox: the live ledger, node group health, moves in flight."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.status import fleet_status
from tests.automation.sandbox.deployer import DeployerAccess

runner = CliRunner()


def status_json(sandbox, *args: str) -> dict:
    result = runner.invoke(app, ["status", "--json", "--inventory", str(sandbox.inventory), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def plan_pools(sandbox_server) -> list[dict]:
    result = runner.invoke(app, ["plan", "--json", "--stacks-dir", str(sandbox_server.stacks_dir)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["pools"]


def test_a_freshly_applied_fleet_reads_like_its_plan(sandbox, plan_pools):
    live = status_json(sandbox)
    # One shape for a pool's usage: the plan's ledger (initial sizes) and the live one compare whole.
    assert live["pools"] == plan_pools
    assert all(p["in_flight"] == 0 for p in live["pools"])
    groups = {g["name"]: (g["desired"], g["live"], g["in_service"], g["healthy"]) for g in live["node_groups"]}
    assert groups == {"serve-h100": (2, 2, 2, 2), "train-h100": (5, 5, 5, 5), "train-h200": (4, 4, 4, 4)}
    age = live["inventory"]
    assert age["collected_at"] and 0 <= age["age_s"] < 3600 and age["stale"] == [] and age["notes"] == []


def test_scaling_and_health_show_up(sandbox):
    inv = load_inventory(sandbox.inventory)
    asg = DeployerAccess(sandbox).client("inference", "autoscaling")  # scaled and marked by someone else
    name = inv.groups_of("inference")[0].group.asg_name
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=4)  # 1 fits
    first = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    asg.set_instance_health(InstanceId=first["Instances"][0]["InstanceId"], HealthStatus="Unhealthy")

    result = fleet_status(inv, AwsAccess(inv, operation="status"))
    h100 = next(p for p in result.pools if p.name == "h100-use1-az4")
    assert (h100.count, h100.consumers, h100.free) == (8, {"inference": 4, "training": 5}, -1)
    serve = next(g for g in result.node_groups if g.name == "serve-h100")
    assert (serve.desired, serve.live, serve.in_service, serve.healthy) == (4, 3, 3, 2)


def test_moves_in_flight_come_from_the_journal(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = AwsAccess(inv, operation="test")
    journal = Journal(access.client("platform", "dynamodb", passthrough=("ConditionalCheckFailedException",
                                                                          "TransactionCanceledException")), inv.journal_table)
    plan = {"pool": "h100-use1-az4", "from_role": "training", "to_role": "inference", "nodes": 2}
    journal.create("rb-live", {"plan": plan})
    finished = journal.create("rb-old", {"plan": dict(plan, nodes=3)})
    finished = journal.transition(finished, MoveState.ROLLING_BACK)
    journal.transition(finished, MoveState.ROLLED_BACK)

    live = status_json(sandbox)
    assert {p["name"]: p["in_flight"] for p in live["pools"]} == {"h100-use1-az4": 2, "h200-use1-az6": 0}
    assert [(m["op_id"], m["state"], m["nodes"]) for m in live["moves"]] == [("rb-live", "PLANNED", 2)]


def test_the_table_names_pools_and_groups(sandbox):
    result = runner.invoke(app, ["status", "--inventory", str(sandbox.inventory), "--pool", "h200-use1-az6"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "h200-use1-az6" in result.stdout and "train-h200" in result.stdout
    assert "serve-h100" not in result.stdout
    assert "inventory collected " in result.stdout


@pytest.mark.parametrize("args", [
    ["--pool", "a100-nowhere"],
    ["--inventory", "/nonexistent/inventory.json"],
])
def test_bad_input_exits_2_before_any_aws_call(sandbox, args):
    base = [] if "--inventory" in args else ["--inventory", str(sandbox.inventory)]
    result = runner.invoke(app, ["status", "--json", *base, *args])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == 2
    assert sandbox.requests() == []


def test_a_malformed_inventory_exits_2_naming_the_key(sandbox, tmp_path):
    doc = sandbox.outputs()
    del doc["stacks"]["platform"]["journalTable"]
    bad = tmp_path / "inventory.json"
    bad.write_text(json.dumps(doc))
    result = runner.invoke(app, ["status", "--inventory", str(bad)])
    assert result.exit_code == 2
    assert "stacks.platform.journalTable" in result.stderr
    assert sandbox.requests() == []

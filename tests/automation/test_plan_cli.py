"""`gpufleet plan` through Typer's CliRunner: the JSON contract, the ledger, and every bad input of
issue 2 (exit 2, one message naming the stack file, key and value, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from tests.reference_stacks import copy_stacks

runner = CliRunner()


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the reference stack files to break."""
    return copy_stacks(tmp_path / "stacks")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def plan(stacks_dir: Path, *args: str):
    return runner.invoke(app, ["plan", "--stacks-dir", str(stacks_dir), *args])


def test_json_plan_of_the_reference_fleet(stacks):
    result = plan(stacks, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["stacks"]] == ["platform", "training", "inference"]
    for s in doc["stacks"]:
        assert {"name", "role", "account_id", "region", "resources_by_type", "node_groups",
                "cost_per_hour_usd"} <= set(s), s.keys()
    training = next(s for s in doc["stacks"] if s["name"] == "training")
    groups = {g["name"]: g for g in training["node_groups"]}
    assert (groups["train-h100"]["efa_interfaces"], groups["train-h100"]["gpus"]) == (32, 40)
    assert (groups["train-h200"]["efa_interfaces"], groups["train-h200"]["placement_group"]) == (16, False)
    assert training["resources_by_type"]["aws:autoscaling/group:Group"] == 2
    assert training["storage"][0]["capacity_gib"] == 4800
    assert training["cost_per_hour_usd"] > groups["train-h100"]["usd_per_hour"] + groups["train-h200"]["usd_per_hour"]
    assert (groups["train-h100"]["initial_nodes"], groups["train-h200"]["initial_nodes"]) == (5, 4)
    pools = {p["name"]: p for p in doc["pools"]}
    assert pools["h100-use1-az4"]["consumers"] == {"inference": 2, "training": 5}
    assert (pools["h100-use1-az4"]["free"], pools["h100-use1-az4"]["in_flight"]) == (1, 0)
    assert {"name", "instance_type", "az_id", "count", "consumers"} <= set(pools["h200-use1-az6"])
    # The reference platform creates its ODCRs (the sandbox has no pre-bought capacity to adopt):
    # the plan warns about exactly those, and nothing else.
    assert sorted((f["rule"], f["severity"], f["stack"], f["resource"]) for f in doc["findings"]) == [
        ("capacity.scarce-new-odcr", "warning", "platform", "h100-use1-az4"),
        ("capacity.scarce-new-odcr", "warning", "platform", "h200-use1-az6")]
    assert (doc["totals"]["gpus"], doc["totals"]["initial_nodes"]) == (88, 11)
    assert any("rebalancer owns the live size" in n for n in doc["notes"])


def test_human_output_shows_stacks_ledger_and_totals(stacks):
    result = runner.invoke(app, ["plan", "--stacks-dir", str(stacks)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for text in ("capacity ledger (initial sizes)", "use1-az4", "GPU node groups", "initial (min-max)",
                 "the rebalancer owns the live size", "per hour", "2 findings", "capacity.scarce-new-odcr",
                 "plan: 3 stacks", "nodes initially", "--resources"):
        assert text in result.stdout, text


def test_one_stack_alone_skips_the_ledger_and_says_so(stacks):
    result = plan(stacks, "--stack", "training", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["stacks"]] == ["training"]
    assert doc["pools"] == []
    assert any("platform stack is not in the plan" in n for n in doc["notes"])


def test_placement_group_on_a_reservation_is_an_error_finding(stacks):
    edit(stacks / "Pulumi.training.yaml", "      maxNodes: 4\n", "      maxNodes: 4\n      enablePlacementGroup: true\n")
    result = plan(stacks, "--json")
    assert result.exit_code == 1, result.output
    [finding] = [f for f in json.loads(result.stdout)["findings"] if f["rule"] != "capacity.scarce-new-odcr"]
    assert (finding["rule"], finding["stack"], finding["resource"]) == (
        "capacity.placement-group-with-reservation", "training", "train-h200")


BAD_INPUTS = {
    "unknown instance type": ("Pulumi.training.yaml", "instanceType: p5en.48xlarge", "instanceType: p9.96xlarge",
                              "gpufleet:nodeGroups[1].instanceType", "'p9.96xlarge'"),
    "over-committed pool": ("Pulumi.training.yaml", "initialNodes: 5", "initialNodes: 7",
                            "gpufleet:nodeGroups[0].initialNodes", "7"),
    # Regressions: each passed the loader, then a component raised (a traceback, exit 1).
    "a node group of at most 0 nodes": ("Pulumi.inference.yaml", "initialNodes: 2\n      minNodes: 0\n      maxNodes: 8",
                                        "initialNodes: 0\n      minNodes: 0\n      maxNodes: 0",
                                        "gpufleet:nodeGroups[0].maxNodes", "0"),
    "an on-demand pool with a reservation": ("Pulumi.platform.yaml", "count: 4\n      kind: odcr",
                                             "count: 4\n      kind: on-demand\n      reservationId: cr-0123456789abcdef0",
                                             "gpufleet:pools[1].reservationId", "'cr-0123456789abcdef0'"),
    "a dataset prefix with a leading slash": ("Pulumi.training.yaml", "fsxImportPrefix: datasets/",
                                              "fsxImportPrefix: /datasets/", "gpufleet:storage.fsxImportPrefix",
                                              "'/datasets/'"),
    "an EKS cluster in one AZ": ("Pulumi.inference.yaml", "    - use1-az4\n    - use1-az6\n", "    - use1-az4\n",
                                 "gpufleet:azIds", "['use1-az4']"),
    "the key of earlier versions": ("Pulumi.training.yaml", "initialNodes: 4", "numNodes: 4",
                                    "gpufleet:nodeGroups[1].numNodes", "4"),
    "malformed account id": ("Pulumi.inference.yaml", 'accountId: "333333333333"', 'accountId: "33333333333"',
                             "gpufleet:accountId", "'33333333333'"),
    "AZ name instead of AZ ID": ("Pulumi.platform.yaml", "    - use1-az6", "    - us-east-1b",
                                 "gpufleet:azIds[1]", "'us-east-1b'"),
    "missing key": ("Pulumi.inference.yaml", "  gpufleet:deployRoleArn: arn:aws:iam::333333333333:role/gpufleet-deploy\n",
                    "", "gpufleet:deployRoleArn", "None"),
    "FSx capacity not allowed": ("Pulumi.training.yaml", "fsxCapacityGib: 4800", "fsxCapacityGib: 3000",
                                 "gpufleet:storage.fsxCapacityGib", "3000"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("json_mode", [False, True])
def test_bad_input_exits_2_naming_file_key_and_value(stacks, case, json_mode):
    file_name, old, new, key, value = BAD_INPUTS[case]
    edit(stacks / file_name, old, new)
    result = plan(stacks, *(["--json"] if json_mode else []))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"{stacks / file_name}: {key} = {value}:" in errors[0], errors[0]
    if json_mode:
        error = json.loads(result.stdout)["error"]
        assert error["code"] == 2 and key in error["message"]


def test_a_cpu_node_group_rendered_alone_is_bad_input_not_a_traceback(stacks):
    # Regression: without the platform stack nothing compared the group to its pool, and the EKS
    # component raised "has no GPUs" from inside the render.
    edit(stacks / "Pulumi.inference.yaml", "instanceType: p5.48xlarge", "instanceType: m7i.2xlarge")
    result = plan(stacks, "--stack", "inference")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert (f"{stacks / 'Pulumi.inference.yaml'}: gpufleet:nodeGroups[0].instanceType = 'm7i.2xlarge': "
            "node groups hold GPU") in result.stderr


def test_the_old_key_names_its_new_name(stacks):
    edit(stacks / "Pulumi.training.yaml", "initialNodes: 5", "numNodes: 5")
    result = plan(stacks)
    assert result.exit_code == 2
    assert "renamed to initialNodes" in result.stderr and "initialNodes: 5" in result.stderr


def test_unknown_stack_name_is_bad_input(stacks):
    result = plan(stacks, "--stack", "staging")
    assert result.exit_code == 2
    assert "Pulumi.staging.yaml" in result.stderr and "stack file not found" in result.stderr


def test_plan_cost_counts_the_unused_reservation_the_head_and_the_system_nodes(stacks):
    doc = json.loads(plan(stacks, "--json").stdout)
    items = {s["name"]: {i["item"]: i for i in s["cost_items"]} for s in doc["stacks"]}
    # One p5 slot of h100-use1-az4 is free at the initial sizes: billed to the platform account.
    unused = items["platform"]["unused reserved slots of h100-use1-az4 (p5.48xlarge)"]
    p5 = items["training"]["train-h100 (p5.48xlarge)"]["unit_price_usd"]
    assert (unused["quantity"], unused["usd_per_hour"]) == (1, p5)
    assert items["training"]["slurm-head-instance (m7i.2xlarge)"]["quantity"] == 1
    assert items["inference"]["eks-system (m7i.xlarge)"]["quantity"] == 2
    for stack in doc["stacks"]:
        assert stack["cost_per_hour_usd"] == pytest.approx(sum(i["usd_per_hour"] for i in stack["cost_items"]), abs=0.01)

    # Fill the slot: the line goes, the platform's hour drops by one p5.
    edit(stacks / "Pulumi.training.yaml", "initialNodes: 5", "initialNodes: 6")
    filled = json.loads(plan(stacks, "--json").stdout)
    platform = next(s for s in filled["stacks"] if s["name"] == "platform")
    assert not any(i["item"].startswith("unused reserved") for i in platform["cost_items"])
    assert platform["cost_per_hour_usd"] == pytest.approx(doc["stacks"][0]["cost_per_hour_usd"] - p5, abs=0.01)


def test_unused_slots_are_billed_to_the_consumer_that_took_billing_ownership(stacks):
    edit(stacks / "Pulumi.platform.yaml", "kind: odcr\n      shareWith: [training, inference]",
         "kind: odcr\n      unusedBilledTo: inference\n      shareWith: [training, inference]")
    doc = json.loads(plan(stacks, "--json").stdout)
    items = {s["name"]: {i["item"]: i for i in s["cost_items"]} for s in doc["stacks"]}
    label = "unused reserved slots of h100-use1-az4 (p5.48xlarge)"
    assert label not in items["platform"] and items["inference"][label]["quantity"] == 1
    inference = next(s for s in doc["stacks"] if s["name"] == "inference")
    assert inference["cost_per_hour_usd"] == pytest.approx(sum(i["usd_per_hour"] for i in inference["cost_items"]),
                                                           abs=0.01)

    # Without the paying stack in the plan, the plan says what it leaves out.
    alone = json.loads(plan(stacks, "--json", "--stack", "platform").stdout)
    assert "unused reserved slots billed to inference are not counted: no such stack in the plan" in alone["notes"]


def test_a_capacity_block_is_priced_at_its_purchase_price(stacks):
    edit(stacks / "Pulumi.platform.yaml", "kind: odcr\n      shareWith: [training, inference]",
         "kind: capacity-block\n      reservationId: cr-0123456789abcdef0\n      pricePerHourUsd: 31.25\n"
         "      startTime: '2026-12-01T11:30:00Z'\n      endTime: '2026-12-15T11:30:00Z'\n"
         "      shareWith: [training, inference]")
    doc = json.loads(plan(stacks, "--json").stdout)
    items = {s["name"]: {i["item"]: i for i in s["cost_items"]} for s in doc["stacks"]}
    train = items["training"]["train-h100 (p5.48xlarge)"]
    assert (train["unit_price_usd"], train["usd_per_hour"]) == (31.25, 31.25 * train["quantity"])
    unused = items["platform"]["unused reserved slots of h100-use1-az4 (p5.48xlarge)"]
    assert (unused["quantity"], unused["usd_per_hour"]) == (1, 31.25)
    # The other pool is an ODCR: its nodes keep the on-demand rate.
    assert items["training"]["train-h200 (p5en.48xlarge)"]["unit_price_usd"] != 31.25

"""Every command's table at 80 columns against the sandbox: nothing cut with an ellipsis, no line
wider than the terminal, and every identifier of the JSON shown whole (not folded)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import Journal

runner = CliRunner()
WIDTH = 80


def at_80(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_fits(text: str) -> None:
    assert "…" not in text, text
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide


def assert_whole(text: str, names: set[str]) -> None:
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"{missing} cut or folded in:\n{text}"


def test_status(sandbox):
    inv = ("--inventory", str(sandbox.inventory))
    text = at_80("status", *inv)
    assert_fits(text)
    doc = as_json("status", *inv)
    assert_whole(text, {p["name"] for p in doc["pools"]} | {g["name"] for g in doc["node_groups"]}
                 | {p["instance_type"] for p in doc["pools"]})
    assert not any(g["asg_name"] in text for g in doc["node_groups"])  # derivable: -o wide only
    wide = runner.invoke(app, ["status", *inv, "-o", "wide"], env={"COLUMNS": "250"})
    assert wide.exit_code == 0, wide.output
    assert_whole(wide.stdout, {g["asg_name"] for g in doc["node_groups"]})


def pools_table(text: str) -> list[str]:
    """The lines of status's pools table: from its header to the node groups' title."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("POOL "))
    end = next(i for i, line in enumerate(lines) if line.startswith("node groups"))
    return lines[start:end]


def test_status_with_spares_and_a_move_in_flight_keeps_every_word_whole(sandbox):
    """Both conditional columns shown: still within 80 columns, and a cell folds only at its spaces."""
    doc = json.loads(sandbox.inventory.read_text())
    for stack in doc["stacks"].values():
        for pool in stack.get("pools") or ():
            if pool["name"] == "h100-use1-az4":
                pool["spares"] = 1
    sandbox.inventory.write_text(json.dumps(doc))
    inv = load_inventory(sandbox.inventory)
    journal = Journal(AwsAccess(inv, operation="test").client(
        "platform", "dynamodb", passthrough=("ConditionalCheckFailedException", "TransactionCanceledException")),
        inv.journal_table)
    journal.create("rb-in-flight", {"plan": {"pool": "h100-use1-az4", "from_role": "training",
                                             "to_role": "inference", "nodes": 2}})
    args = ("status", "--inventory", str(sandbox.inventory))
    status = as_json(*args)
    h100 = next(p for p in status["pools"] if p["name"] == "h100-use1-az4")
    assert (h100["spares"], h100["in_flight"]) == (1, 2)
    text = at_80(*args)
    assert_fits(text)
    rows = pools_table(text)
    assert rows[0].split() == ["POOL", "TYPE", "KIND", "COUNT", "CONSUMERS", "SPARES", "FREE", "MOVING"]
    cells = [[p["name"], p["instance_type"], p["kind"], str(p["count"]),
              ", ".join(f"{role} {n}" for role, n in sorted(p["consumers"].items())),
              str(p["spares"]), str(p["free"]), str(p["in_flight"])] for p in status["pools"]]
    words = {w for row in cells for cell in row for w in cell.split()}
    assert {w for line in rows[1:] for w in line.split()} == words, "\n".join(rows)  # nothing folded inside a word
    assert not {p["az_id"] for p in status["pools"]} & words  # -o wide only
    wide = runner.invoke(app, [*args, "-o", "wide"], env={"COLUMNS": "250"})
    assert wide.exit_code == 0, wide.output
    assert pools_table(wide.stdout)[0].split()[:4] == ["POOL", "TYPE", "AZ", "ID"]
    assert_whole(wide.stdout, {p["az_id"] for p in status["pools"]})


def test_status_shows_moving_only_while_something_moves(sandbox):
    text = at_80("status", "--inventory", str(sandbox.inventory))
    assert pools_table(text)[0].split() == ["POOL", "TYPE", "KIND", "COUNT", "CONSUMERS", "FREE"]


def test_plan_shows_a_summary_first_and_resources_on_request(sandbox):
    stacks = ("--stacks-dir", str(sandbox.stacks_dir))
    text = at_80("plan", *stacks)
    assert_fits(text)
    assert text.splitlines()[0].startswith("plan: 3 stacks")
    assert "aws:s3/bucket:Bucket" not in text and "--resources" in text
    findings = as_json("plan", *stacks)["findings"]
    assert findings, "the reference stacks raise the scarce-capacity warnings"
    assert_whole(text, {f"{f['severity']}  {f['rule']}  {f['stack']}/{f['resource']}" for f in findings})
    assert_whole(text, {"platform", "training", "inference", "train-h100", "train-h200", "serve-h100",
                        "h100-use1-az4", "h200-use1-az6", "111111111111", "222222222222", "333333333333"})
    full = at_80("plan", *stacks, "--resources")
    assert_fits(full)
    assert "aws:autoscaling/group:Group" in full  # a type wider than the terminal folds; this one fits


def test_sandbox_status(sandbox):
    text = at_80("sandbox", "status", "--state-dir", str(sandbox.state_dir))
    assert_fits(text)
    doc = as_json("sandbox", "status", "--state-dir", str(sandbox.state_dir))
    assert_whole(text, {r["name"] for r in doc["reservations"]}
                 | {a for r in doc["reservations"] for a in r["shared_with"]})


def test_rebalance_plan(sandbox):
    args = ("rebalance", "--from", "training", "--to", "inference", "--nodes", "2", "--inventory", str(sandbox.inventory))
    text = at_80(*args)
    assert_fits(text)
    doc = as_json(*args)
    assert_whole(text, {v["instance_id"] for v in doc["plan"]["victims"]} | {doc["plan"]["pool"]})


def test_health_is_a_line_per_node(sandbox):
    args = ("health", "--probe", "local", "--tiers", "quick", "--inventory", str(sandbox.inventory))
    text = at_80(*args)
    assert_fits(text)
    doc = as_json(*args)
    nodes = [n["node"] for n in doc["report"]["nodes"]]
    assert_whole(text, set(nodes))
    assert len(text.splitlines()) <= len(nodes) + 6, text


@pytest.mark.parametrize("wide", [False, True])
def test_the_wide_tables_fold_rather_than_cut(sandbox, wide):
    text = at_80("status", "--inventory", str(sandbox.inventory), *(["-o", "wide"] if wide else []))
    assert_fits(text)


def test_health_matrix_is_a_node_by_check_grid(sandbox):
    args = ("health", "--probe", "local", "--tiers", "quick", "--inventory", str(sandbox.inventory))
    doc = as_json(*args)
    text = at_80(*args, "--matrix")
    assert_fits(text)
    checks = list(dict.fromkeys(r["check"] for n in doc["report"]["nodes"] for r in n["report"]["results"]))
    assert "  ".join(f"{i} {c}" for i, c in enumerate(checks, 1)) in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("i-")}
    mark = {"PASS": ".", "WARN": "W", "FAIL": "F", "SKIP": "-"}
    for node in doc["report"]["nodes"]:
        by_check = {r["check"]: mark[r["status"]] for r in node["report"]["results"]}
        assert rows[node["node"]] == [by_check[c] for c in checks] + [node["status"]], node["node"]


def test_plan_wide_keeps_every_identifier_whole_past_the_terminal(sandbox):
    stacks = ("--stacks-dir", str(sandbox.stacks_dir))
    doc = as_json("plan", *stacks)
    text = at_80("plan", *stacks, "-o", "wide")
    assert "…" not in text, text
    lines = text.splitlines()
    names = ({c["name"] for s in doc["stacks"] for c in s["clusters"]} | {str(s["source"]) for s in doc["stacks"]}
             | {g["capacity_reservation_id"] for s in doc["stacks"] for g in s["node_groups"]
                if g["capacity_reservation_id"]}
             | {g["name"] for s in doc["stacks"] for g in s["node_groups"]})
    assert names and all(any(n in line for line in lines) for n in names), text  # each whole, on one line
    assert max(len(line.rstrip()) for line in lines) > WIDTH  # -o wide may pass the terminal, as kubectl's does
    # A row stays one line: every table row starts with a stack's name.
    rows = [line for line in lines if line.split(" ", 1)[0] in {s["name"] for s in doc["stacks"]}]
    assert len(rows) == len(doc["stacks"]) * 1 + sum(len(s["node_groups"]) + len(s["clusters"]) for s in doc["stacks"])

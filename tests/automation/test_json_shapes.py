"""One shape per thing: a node group, a pool, a move and a node's health have the same keys in the
JSON of plan, status, rebalance and health (docs/json.md), and each document leads with its schema version."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import SCHEMA_VERSION

runner = CliRunner()
NODE_GROUP = {"stack", "name", "pool", "instance_type", "min_nodes", "max_nodes"}
LIVE_GROUP = {"stack", "name", "pool", "instance_type", "asg_name"}
"""A node group where AWS was read: every status group, a move's source and dest, a health target's group."""
POOL = {"name", "instance_type", "az_id", "kind", "count", "consumers", "spares", "free", "in_flight", "start_time", "end_time",
        "price_usd_per_hour", "unused_billed_to"}
MOVE = {"op_id", "state", "pool", "from_role", "to_role", "nodes"}
NODE_HEALTH = {"node", "ok", "status", "reasons"}


def doc(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["schema_version"] == SCHEMA_VERSION, list(out)
    return out


def test_the_same_keys_in_every_command(sandbox):
    inv = ("--inventory", str(sandbox.inventory))
    plan = doc("plan", "--stacks-dir", str(sandbox.stacks_dir))
    status = doc("status", *inv)
    plan_groups = [g for s in plan["stacks"] for g in s["node_groups"]]
    for g in plan_groups + status["node_groups"]:
        assert set(g) >= NODE_GROUP, (NODE_GROUP - set(g), g)
    assert ({(g["stack"], g["name"], g["instance_type"]) for g in plan_groups}
            == {(g["stack"], g["name"], g["instance_type"]) for g in status["node_groups"]})
    for p in plan["pools"] + status["pools"]:
        assert set(p) == POOL, p

    moved = doc("rebalance", "--from", "training", "--to", "inference", "--nodes", "2", "-y", "--probe", "local", *inv)
    listed = doc("rebalance", "ls", *inv)["moves"]
    shown = doc("rebalance", "show", moved["op_id"], *inv)
    for m in [moved, *listed, shown["move"]]:
        assert set(m) >= MOVE, m
    assert ({k: moved[k] for k in MOVE} == {k: listed[0][k] for k in MOVE} == {k: shown["move"][k] for k in MOVE}
            == {"op_id": moved["op_id"], "state": "DONE", **{k: moved["plan"][k] for k in MOVE - {"op_id", "state"}}})

    health = doc("health", "--probe", "local", "--tiers", "quick", *inv)
    by_name = {(g["stack"], g["name"]): {k: g[k] for k in LIVE_GROUP} for g in status["node_groups"]}
    assert all(set(g) >= LIVE_GROUP for g in status["node_groups"])
    groups = [moved["source"], moved["dest"], shown["source"], shown["dest"], *(t["node_group"] for t in health["targets"])]
    for g in groups:  # the same keys, and the same values as status has for that group
        assert set(g) == LIVE_GROUP and g == by_name[(g["stack"], g["name"])], (g, by_name)
    assert (moved["source"]["name"], moved["dest"]["name"]) == ("train-h100", "serve-h100")
    assert shown["source"] == moved["source"] and shown["dest"] == moved["dest"]

    checked = health["report"]["nodes"]
    [gate] = shown["gates"]
    assert checked and gate["nodes"]
    for n in [*checked, *gate["nodes"]]:  # a node's health: the same keys in health and in a move's gate
        assert set(n) - {"report"} == NODE_HEALTH and n["status"] in ("PASS", "WARN", "FAIL", "SKIP"), n
    assert sorted(n["node"] for n in gate["nodes"]) == sorted(moved["acquired"])
    assert {t["node"] for t in health["targets"]} == {n["node"] for n in checked}
    assert set(moved["acquired"]) <= {t["node"] for t in health["targets"]}


def test_documented_in_docs_json_md():
    from tests.conftest import REPO

    text = (REPO / "docs" / "json.md").read_text()
    assert f"schema_version: {SCHEMA_VERSION}" in text
    for key in NODE_GROUP | LIVE_GROUP | POOL | MOVE | NODE_HEALTH | {"node_group", "source", "dest"}:
        assert f"`{key}`" in text, key

"""One shape per thing: a node group, a pool, a move and a node's health have the same keys in the
JSON of plan, status, rebalance and health (docs/json.md), and each document leads with its schema version."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import SCHEMA_VERSION

runner = CliRunner()
NODE_GROUP = {"stack", "name", "pool", "instance_type", "min_nodes", "max_nodes"}
POOL = {"name", "instance_type", "az_id", "kind", "count", "consumers", "spares", "free", "in_flight", "start_time", "end_time",
        "price_usd_per_hour", "unused_billed_to"}
MOVE = {"op_id", "state", "pool", "from_role", "to_role", "nodes"}
NODE_HEALTH = {"node", "status"}


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
    for m in [*listed, shown["move"]]:
        assert set(m) >= MOVE, m
    assert {k: listed[0][k] for k in MOVE} == {k: shown["move"][k] for k in MOVE} == {
        "op_id": moved["op_id"], "state": moved["state"], **{k: moved["plan"][k] for k in MOVE - {"op_id", "state"}}}

    health = doc("health", "--probe", "local", "--tiers", "quick", *inv)
    assert health["report"]["nodes"] and all(set(n) >= NODE_HEALTH for n in health["report"]["nodes"])


def test_documented_in_docs_json_md():
    from tests.conftest import REPO

    text = (REPO / "docs" / "json.md").read_text()
    assert f"schema_version: {SCHEMA_VERSION}" in text
    for key in NODE_GROUP | POOL | MOVE | NODE_HEALTH:
        assert f"`{key}`" in text, key

"""`gpufleet rebalance ls` and `rebalance show OP_ID`: past moves read back from the journal."""

from __future__ import annotations

import json
from datetime import datetime

from typer.testing import CliRunner

from gpufleet.automation.cli.main import app

runner = CliRunner()


def cli(sandbox, *args: str, columns: int = 80):
    return runner.invoke(app, [*args, "--inventory", str(sandbox.inventory)], env={"COLUMNS": str(columns)})


def move(sandbox, from_role: str, to_role: str) -> dict:
    done = cli(sandbox, "rebalance", "--from", from_role, "--to", to_role, "--nodes", "2", "-y", "--probe", "local",
               "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_moves_are_listed_newest_first_and_shown_with_their_timeline(sandbox):
    there = move(sandbox, "training", "inference")
    back = move(sandbox, "inference", "training")

    listed = cli(sandbox, "rebalance", "ls", "--json")
    assert listed.exit_code == 0, listed.output
    moves = json.loads(listed.stdout)["moves"]
    assert [m["op_id"] for m in moves] == [back["op_id"], there["op_id"]]
    first = moves[1]
    assert (first["state"], first["from_role"], first["to_role"], first["pool"], first["nodes"], first["finished"]) == (
        "DONE", "training", "inference", "h100-use1-az4", 2, True)
    assert datetime.fromisoformat(first["started_at"]).utcoffset().total_seconds() == 0
    assert 0 < first["duration_s"] < 600

    limited = json.loads(cli(sandbox, "rebalance", "ls", "--limit", "1", "--json").stdout)["moves"]
    assert [m["op_id"] for m in limited] == [back["op_id"]]

    shown = cli(sandbox, "rebalance", "show", there["op_id"], "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    states = [s["state"] for s in detail["timeline"]]
    assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY", "JOINED", "DONE"]
    assert all(s["duration_s"] is not None and s["duration_s"] >= 0 for s in detail["timeline"][:-1])
    assert detail["timeline"][-1]["duration_s"] is None  # where it ended
    assert sorted(v["instance_id"] for v in detail["victims"]) == sorted(v["instance_id"] for v in there["plan"]["victims"])
    assert all(v["reason"] for v in detail["victims"])
    assert sorted(detail["acquired"]) == sorted(there["acquired"])
    assert [sorted(g["passed"]) for g in detail["gates"]] == [sorted(there["acquired"])]
    assert (detail["source"]["name"], detail["dest"]["name"]) == ("train-h100", "serve-h100")

    table = cli(sandbox, "rebalance", "ls")
    assert table.exit_code == 0 and "…" not in table.stdout
    assert there["op_id"] in table.stdout and back["op_id"] in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    text = cli(sandbox, "rebalance", "show", there["op_id"]).stdout
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for word in ["CHECKPOINTING", *there["acquired"], *(v["instance_id"] for v in there["plan"]["victims"])]:
        assert word in text, word


def test_an_unknown_move_exits_2_naming_it(sandbox):
    done = cli(sandbox, "rebalance", "show", "rb-20990101-000000-abcdef", "--json")
    assert done.exit_code == 2, done.output
    error = json.loads(done.stdout)["error"]
    assert "'rb-20990101-000000-abcdef'" in error["message"] and "rebalance ls" in error["hint"]
    assert cli(sandbox, "rebalance", "ls", "--limit", "0").exit_code == 2


def test_an_empty_journal_says_so(sandbox):
    done = cli(sandbox, "rebalance", "ls")
    assert done.exit_code == 0 and done.stdout.strip() == "no moves in the journal"


def test_show_draws_the_timeline_as_a_gantt(sandbox, tmp_path):
    from gpufleet.automation.cli.charts import move_timeline
    from gpufleet.automation.inventory import load_inventory
    from gpufleet.automation.rebalance import history

    there = move(sandbox, "training", "inference")
    png = tmp_path / "timeline.png"
    drawn = cli(sandbox, "rebalance", "show", there["op_id"], "--chart", str(png))
    assert drawn.exit_code == 0, drawn.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    detail = history.show_move(history.journal_of(load_inventory(sandbox.inventory)), there["op_id"])
    fig = move_timeline(detail, tmp_path / "again.svg")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [s.state for s in detail.timeline]
    bars = ax.patches
    assert [round(b.get_width(), 2) for b in bars] == [s.duration_s or 0.0 for s in detail.timeline]
    assert [round(b.get_x(), 2) for b in bars] == [s.offset_s for s in detail.timeline]
    assert all(bars[i].get_x() <= bars[i + 1].get_x() for i in range(len(bars) - 1))
    assert ax.get_xlabel() == "seconds since the move was journaled"
    assert there["op_id"] in ax.get_title() and "DONE" in ax.get_title()

    bad = cli(sandbox, "rebalance", "show", there["op_id"], "--chart", str(tmp_path / "t.gif"), "--json")
    assert bad.exit_code == 2 and "--chart" in json.loads(bad.stdout)["error"]["message"]

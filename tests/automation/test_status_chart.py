"""`gpufleet status --chart FILE.png`: capacity per pool and consumer over time, from the groups'
scaling activities (the sandbox's own history), read back from the figure's axes and series."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpufleet.automation.capacity_history import capacity_series
from gpufleet.automation.cli.charts import capacity_over_time
from gpufleet.automation.cli.main import app
from gpufleet.automation.usage.spans import NodeSpan

runner = CliRunner()


def span(iid: str, role: str, start: float, end: float | None = None, pool: str = "p1") -> NodeSpan:
    return NodeSpan(instance_id=iid, stack=role, account_id="1", role=role, pool=pool, start=start, end=end)


def test_the_count_steps_at_each_launch_and_end_inside_the_window():
    nodes = [span("i-1", "training", 0), span("i-2", "training", 150, 400), span("i-3", "inference", 400),
             span("i-4", "training", 10, 50)]  # i-4 lived and died before the window
    series = {(s.pool, s.role): s for s in capacity_series(nodes, since=100, now=1000)}
    assert series["p1", "training"].times == (100, 150, 400, 1000)
    assert series["p1", "training"].nodes == (1, 2, 1, 1)
    assert series["p1", "inference"].times == (100, 400, 1000)
    assert series["p1", "inference"].nodes == (0, 1, 1)


def test_a_panel_per_pool_a_series_per_consumer_and_the_reservation(tmp_path):
    nodes = [span("i-1", "training", 0), span("i-2", "inference", 1800), span("i-3", "training", 0, pool="p2")]
    fig = capacity_over_time(capacity_series(nodes, 0, 3600), {"p1": 4, "p2": 2}, 0, 3600, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    p1, p2 = fig.axes
    assert [p1.get_title(loc="left"), p2.get_title(loc="left")] == ["p1", "p2"]
    assert [t.get_text() for t in p1.get_legend().get_texts()] == ["inference", "training", "reserved"]
    assert [t.get_text() for t in p2.get_legend().get_texts()] == ["training", "reserved"]
    inference = p1.get_lines()[0]
    assert list(inference.get_xdata()) == [-1.0, -0.5, 0.0] and list(inference.get_ydata()) == [0, 1, 1]
    assert list(p1.get_lines()[-1].get_ydata()) == [4, 4]
    assert p2.get_xlabel() == "hours before now" and p1.get_ylabel() == "nodes"
    assert p2.get_xlim() == (-1.0, 0.0)


def test_a_move_in_the_sandbox_shows_as_a_step_in_both_consumers(sandbox, tmp_path):
    args = ["--inventory", str(sandbox.inventory)]
    before = json.loads(runner.invoke(app, ["status", *args, "--json"]).stdout)
    moved = runner.invoke(app, ["rebalance", "--from", "training", "--to", "inference", "--nodes", "1",
                                "--pool", "h100-use1-az4", "--yes", *args, "--json"])
    assert moved.exit_code == 0, moved.output
    png = tmp_path / "capacity.png"
    drawn = runner.invoke(app, ["status", *args, "--chart", str(png), "--hours", "1"])
    assert drawn.exit_code == 0, drawn.output
    assert png.read_bytes()[:4] == b"\x89PNG" and f"drawn to {png}" in drawn.stderr
    assert "from the scaling activities (no group metrics:" in drawn.stderr  # the sandbox emits none

    import time

    from gpufleet.automation.aws import AwsAccess
    from gpufleet.automation.inventory import load_inventory
    from gpufleet.automation.usage import sources

    fleet = load_inventory(sandbox.inventory)
    now = time.time()
    _p, nodes, _m = sources.read(fleet, AwsAccess(fleet, operation="status"), now - 3600, now=now)
    series = {(s.pool, s.role): s for s in capacity_series(nodes, now - 3600, now)}
    pool = next(p for p in before["pools"] if p["name"] == "h100-use1-az4")
    for role, delta in (("training", -1), ("inference", +1)):
        assert series["h100-use1-az4", role].nodes[-1] == pool["consumers"][role] + delta
    assert {p for p, _ in series} == {p["name"] for p in before["pools"]}


def test_a_bad_chart_path_exits_2_before_reading_aws(sandbox, tmp_path):
    bad = runner.invoke(app, ["status", "--inventory", str(sandbox.inventory), "--chart", str(tmp_path / "x" / "c.png"),
                              "--json"])
    assert bad.exit_code == 2 and "no directory" in json.loads(bad.stdout)["error"]["message"]

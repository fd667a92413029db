"""`gpufleet health --chart FILE.png`: the node-by-check grid as a picture, read back from the figure
(tick labels, axis labels, the colour of each cell, the legend), not from its pixels."""

from __future__ import annotations

import json

from matplotlib.colors import to_rgb
from typer.testing import CliRunner

from gpufleet.automation.cli.charts import STATUS_COLOURS, health_grid
from gpufleet.automation.cli.main import app
from gpufleet.automation.health.gate import GateReport, NodeVerdict
from gpufleet.lifecycle.health.results import CheckResult, NodeReport, Status, Tier

runner = CliRunner()


def verdict(node: str, status: Status, *results: tuple[str, Status, str]) -> NodeVerdict:
    checks = tuple(CheckResult(check=c, status=s, device=d or None) for c, s, d in results)
    return NodeVerdict(node=node, ok=status is Status.PASS, status=status,
                       report=NodeReport(node=node, tiers=(Tier.QUICK,), results=checks, instance_type="p5.48xlarge"))


def cell_colours(fig) -> list[list[tuple[float, float, float]]]:
    image = fig.axes[0].get_images()[0].get_array()
    return [[tuple(float(v) for v in image[r][c][:3]) for c in range(image.shape[1])] for r in range(image.shape[0])]


def test_each_cell_is_the_worst_status_of_its_check_in_its_colour(tmp_path):
    report = GateReport(tiers=(Tier.QUICK,), passed=("i-a",), failed={"i-b": ("ecc",)}, nodes=(
        verdict("i-a", Status.PASS, ("gpu_count", Status.PASS, ""), ("ecc", Status.PASS, "gpu0"),
                ("nccl", Status.SKIP, "")),
        verdict("i-b", Status.FAIL, ("gpu_count", Status.WARN, ""), ("ecc", Status.PASS, "gpu0"),
                ("ecc", Status.FAIL, "gpu1")),
    ))
    fig = health_grid(report, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "check" and ax.get_ylabel() == "node"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gpu_count", "ecc", "nccl"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["i-a (PASS)", "i-b (FAIL)"]
    c = {s: to_rgb(v) for s, v in STATUS_COLOURS.items()}
    assert cell_colours(fig) == [[c["PASS"], c["PASS"], c["SKIP"]], [c["WARN"], c["FAIL"], to_rgb("#ffffff")]]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["PASS", "WARN", "FAIL", "SKIP"]
    assert [to_rgb(h.get_facecolor()) for h in legend.legend_handles] == [c[s] for s in ("PASS", "WARN", "FAIL", "SKIP")]
    assert "FAILED" in ax.get_title()


def test_the_sandbox_fleet_drawn_by_the_command(sandbox, tmp_path):
    args = ["health", "--probe", "local", "--tiers", "quick", "--inventory", str(sandbox.inventory)]
    doc = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    png = tmp_path / "health.png"
    drawn = runner.invoke(app, [*args, "--matrix", "--chart", str(png)])
    assert drawn.exit_code in (0, 1), drawn.output
    assert png.read_bytes()[:4] == b"\x89PNG" and f"drawn to {png}" in drawn.stderr
    # the grid is printed as well, a row per node the JSON reports
    nodes = [n["node"] for n in doc["report"]["nodes"]]
    assert nodes and all(any(line.startswith(n) for line in drawn.stdout.splitlines()) for n in nodes)

def test_a_bad_chart_path_exits_2_before_any_check(sandbox, tmp_path):
    bad = runner.invoke(app, ["health", "--probe", "local", "--inventory", str(sandbox.inventory),
                              "--chart", str(tmp_path / "grid.gif"), "--json"])
    assert bad.exit_code == 2 and "--chart" in json.loads(bad.stdout)["error"]["message"]
    assert sandbox.client.health()["mutations"] == 0

"""Every ``--chart FILE`` refuses the same bad paths the same way: exit 2, one error, nothing written,
before any work (no AWS, no simulation)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app

runner = CliRunner()

COMMANDS = {
    "schedule show": ["schedule", "show", "--hours", "2"],
    "schedule simulate": ["schedule", "simulate", "--trace", "/nonexistent/trace.csv"],
    "usage": ["usage", "--inventory", "/nonexistent/inventory.json"],
    "status": ["status", "--inventory", "/nonexistent/inventory.json"],
    "health": ["health", "--inventory", "/nonexistent/inventory.json", "--matrix"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("name", "why"), [("chart.jpg", "expected a file ending in .png, .svg, .pdf"),
                                           ("missing/chart.png", "no directory")])
def test_a_bad_chart_path_is_refused_first(command, name, why, tmp_path):
    path = tmp_path / name
    result = runner.invoke(app, [*COMMANDS[command], "--chart", str(path), "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    # the chart path is checked before the missing trace or inventory is even opened
    assert why in error["message"] and str(path) in error["message"], error
    assert not path.exists()

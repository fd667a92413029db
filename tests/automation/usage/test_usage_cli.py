"""`gpufleet usage` input checks (before any AWS call) and its chart."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.usage import chart
from gpufleet.automation.usage.ledger import HOUR_S, compute
from gpufleet.automation.usage.period import parse_period
from gpufleet.automation.usage.spans import MovePhase, NodeSpan, PoolSlots
from gpufleet.infra.errors import BadInputError

runner = CliRunner()
NOW = 1_796_000_000.0


@pytest.mark.parametrize("args,needle", [
    (["--since", "yesterday"], "--since 'yesterday' is not a time"),
    (["--until", "2026-13-40"], "--until '2026-13-40' is not a time"),
    (["--since", "1h", "--until", "2h"], "is not before --until"),
    (["--by", "team"], "--by 'team': choose one of account, pool, class, move"),
    (["--chart", "usage.gif"], "expected a file ending in .png, .svg, .pdf"),
    (["--by", "job", "--prometheus-url", "127.0.0.1:9090"], "--prometheus-url '127.0.0.1:9090': not an http(s) URL"),
])
def test_bad_input_exits_2_naming_the_option(args, needle, tmp_path):
    result = runner.invoke(app, ["usage", *args, "--inventory", str(tmp_path / "none.json")])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr


def test_bad_input_under_json_is_an_error_object(tmp_path):
    result = runner.invoke(app, ["usage", "--by", "team", "--json", "--inventory", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == 2


def test_periods():
    assert parse_period("7d", "now", NOW) == (NOW - 7 * 86400, NOW)
    assert parse_period("2026-12-01T00:00Z", "2026-12-01T06:00", NOW + 10**8)[1] - \
        parse_period("2026-12-01T00:00Z", "2026-12-01T06:00", NOW + 10**8)[0] == 6 * 3600
    ahead = parse_period("2099-01-01T00:00Z", "2099-01-02T00:00Z", NOW)
    assert ahead == (NOW, NOW)  # nothing is known of the future: an empty period
    with pytest.raises(BadInputError):
        parse_period("90x", "now", NOW)


@pytest.mark.emulator
def test_a_future_period_says_there_is_no_data(sandbox):
    result = runner.invoke(app, ["usage", "--since", "2099-01-01T00:00Z", "--until", "2099-01-02T00:00Z",
                                 "--inventory", str(sandbox.inventory)])
    assert result.exit_code == 0, result.output
    assert "no usage between" in result.stdout


def test_the_chart_stacks_accounts_and_classes_and_marks_moves():
    pool = PoolSlots(name="h100", owner_stack="platform", owner_account_id="1", instance_type="p5.48xlarge",
                     gpus_per_node=8, slots=2, kind="odcr", price_usd_per_node_hour=55.04)
    t0 = 1_764_547_200.0
    nodes = [NodeSpan(instance_id="i-1", stack="training", account_id="2", role="training", pool="h100",
                      start=t0, end=None)]
    phases = [MovePhase(op_id="rb-1", instance_id="i-1", step="draining", start=t0 + 1800, end=t0 + 2400)]
    fig = chart.figure(compute(t0, t0 + 3 * HOUR_S, [pool], nodes, phases), phases)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time (UTC)", "GPUs")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training (training)", "moving (training)", "idle (platform)", "a move starts (1)"]
    bands = ax.collections
    assert len(bands) == 3

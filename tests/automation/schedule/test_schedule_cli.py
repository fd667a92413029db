"""`gpufleet schedule show|simulate|trace` through Typer's CliRunner: JSON, tables, charts, exit codes."""

from __future__ import annotations

import datetime as dt
import json

import matplotlib.image
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.plan import load_specs
from gpufleet.automation.schedule import chart
from gpufleet.automation.schedule.policies import Policy
from gpufleet.automation.schedule.show import show as show_plan
from gpufleet.automation.schedule.study import run_study, setup_from_stacks
from gpufleet.automation.schedule.trace import TraceKind, synthesize

runner = CliRunner()
FRIDAY = "2026-03-06T00:00:00+00:00"


def test_show_48_hours_as_json(stacks):
    result = runner.invoke(app, ["schedule", "show", "--hours", "48", "--from", FRIDAY, "--stacks-dir", str(stacks), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    segments = doc["segments"]
    assert segments[0]["start"] == "2026-03-06T00:00:00+00:00" and segments[-1]["end"] == "2026-03-08T00:00:00+00:00"
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:], strict=False))
    assert all(s["inference"] + s["training"] == 8 for s in segments)
    # Friday (CST): moves start 20 minutes (lead 15 + drain 5) before 15:00 UTC; serving 15:00-21:00
    spans = [(s["start"][11:16], s["end"][11:16], s["inference"], s["serving"]) for s in segments]
    assert spans == [("00:00", "14:40", 1, 1), ("14:40", "15:00", 5, 1), ("15:00", "21:00", 5, 5), ("21:00", "00:00", 1, 1)]


def test_show_across_the_dst_change_as_a_table_and_a_chart(stacks, tmp_path):
    png = tmp_path / "plan.png"
    result = runner.invoke(app, ["schedule", "show", "--hours", "96", "--from", FRIDAY, "--stacks-dir", str(stacks),
                                 "--chart", str(png)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Mon 2026-03-09 13:40" in result.stdout  # CDT: an hour earlier in UTC than Friday's 14:40
    assert "Fri 2026-03-06 14:40" in result.stdout
    assert matplotlib.image.imread(png).shape[2] in (3, 4)
    fig = chart.plan_figure(show_plan(load_specs(stacks), dt.datetime.fromisoformat(FRIDAY), 96))
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["inference", "training"]
    assert ax.get_ylabel() == "nodes" and "h100-use1-az4" in ax.get_title()
    assert max(ax.get_lines()[0].get_ydata()) == 5 and min(ax.get_lines()[1].get_ydata()) == 3


def test_show_without_a_schedule_is_bad_input(stacks):
    path = stacks / "Pulumi.platform.yaml"
    path.write_text(path.read_text().split("  # The capacity schedule")[0])
    result = runner.invoke(app, ["schedule", "show", "--stacks-dir", str(stacks)])
    assert result.exit_code == 2 and "has no gpufleet:schedule" in result.stderr


def test_trace_then_simulate_as_json(stacks, tmp_path):
    csv = tmp_path / "steady.csv"
    made = runner.invoke(app, ["schedule", "trace", "--out", str(csv), "--days", "2", "--seed", "4",
                               "--window-nodes", "3", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["minutes"] == 2880
    again = tmp_path / "again.csv"
    runner.invoke(app, ["schedule", "trace", "--out", str(again), "--days", "2", "--seed", "4", "--window-nodes", "3"])
    assert again.read_bytes() == csv.read_bytes()
    result = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks),
                                 "--policy", "schedule", "--policy", "static", "--policy", "oracle", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pool"] == "h100-use1-az4" and doc["minutes"] == 2880
    by = {o["policy"]: o for o in doc["outcomes"]}
    assert list(by) == ["schedule", "static", "oracle"]
    keys = {"served_fraction", "unserved_node_minutes", "training_gpu_hours", "lost_training_gpu_hours", "moves",
            "idle_reserved_gpu_hours", "served_ratio_to_oracle", "training_ratio_to_oracle"}
    assert keys <= set(by["schedule"])
    assert by["oracle"]["served_ratio_to_oracle"] == 1.0 and by["oracle"]["training_ratio_to_oracle"] == 1.0
    assert by["static"]["moves"] == 0 and by["schedule"]["moves"] > 0
    # the static split (2 inference nodes from the stack files) cannot serve a window of 3
    assert by["static"]["served_fraction"] < 0.9 < 0.999 < by["schedule"]["served_fraction"]


def test_simulate_chart_has_demand_and_each_policy(stacks, tmp_path):
    trace = synthesize(TraceKind.STEADY, days=1, seed=1)
    setup = setup_from_stacks(load_specs(stacks), None)
    study = run_study(trace, setup, [Policy.SCHEDULE, Policy.ORACLE], keep_series=True)
    fig = chart.simulation_figure(trace, study.outcomes)
    serve, train = fig.axes
    assert [line.get_label() for line in serve.get_lines()] == ["demand", "schedule", "oracle"]
    assert [line.get_label() for line in train.get_lines()] == ["schedule", "oracle"]
    assert serve.get_ylabel() == "inference nodes" and train.get_ylabel() == "training nodes"
    assert len(serve.get_lines()[0].get_ydata()) == 1440
    png = tmp_path / "sim.png"
    csv = tmp_path / "t.csv"
    runner.invoke(app, ["schedule", "trace", "--out", str(csv), "--days", "1"])
    result = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks),
                                 "--policy", "schedule", "--chart", str(png)])
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(png).ndim == 3


def test_simulate_bad_input_exits_2(stacks, tmp_path):
    missing = runner.invoke(app, ["schedule", "simulate", "--trace", str(tmp_path / "none.csv"), "--stacks-dir", str(stacks)])
    assert missing.exit_code == 2 and "trace file not found" in missing.stderr
    csv = tmp_path / "t.csv"
    csv.write_text("time,demand\n2026-03-09T00:00:00+00:00,1\n")
    bad_pool = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks),
                                   "--pool", "nope", "--json"])
    assert bad_pool.exit_code == 2 and json.loads(bad_pool.stdout)["error"]["code"] == 2
    bad_policy = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--policy", "greedy"])
    assert bad_policy.exit_code == 2
    for lead in ("11,18", "18,13,11", "soon"):
        bad_lead = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks),
                                       "--inference-lead", lead])
        assert bad_lead.exit_code == 2 and f"--inference-lead '{lead}'" in bad_lead.stderr, lead


def test_a_longer_lead_serves_less_of_a_window_the_schedule_prepares_for_too_late(stacks, tmp_path):
    csv = tmp_path / "t.csv"
    runner.invoke(app, ["schedule", "trace", "--out", str(csv), "--days", "1", "--window-nodes", "3"])
    served = {}
    for lead in ("10", "40"):  # the schedule starts moves 15 + 5 minutes ahead
        result = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks),
                                     "--policy", "schedule", "--inference-lead", lead, "--json"])
        assert result.exit_code == 0, result.output
        served[lead] = json.loads(result.stdout)["outcomes"][0]["served_fraction"]
    assert served["40"] < served["10"] == 1.0


def test_show_reports_a_window_a_capacity_block_cannot_serve(stacks, tmp_path):
    from gpufleet.automation.inventory import FleetInventory, write_inventory
    from gpufleet.infra.contract import PoolOutput, StackOutputs

    path = stacks / "Pulumi.platform.yaml"
    text = path.read_text().replace('start: "09:00"', 'start: "18:00"').replace('end: "15:00"', 'end: "22:00"')
    path.write_text(text.replace("timezone: America/Chicago", "timezone: Asia/Tokyo"))  # 09:00-13:00 UTC
    block = PoolOutput(name="h100-use1-az4", instance_type="p5.48xlarge", az_id="use1-az4", kind="capacity-block",
                       count=8, reservation_id="cr-0123456789abcdef0", start_time="2026-03-01T11:30:00+00:00",
                       end_time="2026-03-10T11:30:00+00:00")
    inventory = tmp_path / "inventory.json"
    write_inventory(FleetInventory(stacks={"platform": StackOutputs(role="platform", account_id="111111111111",
                                                                    region="us-east-1", journal_table="gpufleet-journal",
                                                                    pools=(block,))}), inventory)
    result = runner.invoke(app, ["schedule", "show", "--hours", "48", "--from", "2026-03-09T00:00:00+00:00",
                                 "--stacks-dir", str(stacks), "--inventory", str(inventory), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["findings"] == ["pool h100-use1-az4: the window 2026-03-10 09:00-13:00 UTC cannot be served: "
                               "the capacity block is terminated from 11:00 UTC"]
    spans = [(s["start"][:16], s["inference"], s["training"]) for s in doc["segments"]]
    # Monday's window (before the block's last day) is served; Tuesday's is not: training keeps the
    # pool but the outside node, drains by 10:54 (termination 11:00 - drain 5 - a pass), then nothing
    assert spans == [("2026-03-09T00:00", 1, 7), ("2026-03-09T08:40", 5, 3), ("2026-03-09T09:00", 5, 3),
                     ("2026-03-09T13:00", 1, 7),
                     ("2026-03-10T10:54", 1, 0), ("2026-03-10T11:00", 0, 0)]


def test_simulate_at_80_columns_keeps_each_served_fraction_on_its_row(stacks, tmp_path):
    csv = tmp_path / "t.csv"
    runner.invoke(app, ["schedule", "trace", "--out", str(csv), "--days", "1", "--seed", "1"])
    result = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks), "--json"])
    served = {o["policy"]: o["served_fraction"] for o in json.loads(result.stdout)["outcomes"]}
    table = runner.invoke(app, ["schedule", "simulate", "--trace", str(csv), "--stacks-dir", str(stacks)],
                          env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    rows = {line.split()[0]: line.split()[1] for line in table.stdout.splitlines()[1:] if line.split()[0] in served}
    assert rows == {policy: f"{fraction:.4%}" for policy, fraction in served.items()}
    assert max(len(line.rstrip()) for line in table.stdout.splitlines()) <= 80

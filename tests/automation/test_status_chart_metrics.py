"""`gpufleet status --chart` from the Auto Scaling groups' CloudWatch group metrics: the emulated
CloudWatch holds GroupInServiceInstances datapoints for every consumer group (put as AWS emits them,
a minute apart), and the chart's series are those counts summed per pool and consumer, its title
naming the source; without datapoints for a group it falls back to the scaling activities and says
so. The operator role reads the metrics through its own policy (the sandbox evaluates IAM)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from typer.testing import CliRunner

from gpufleet.automation import capacity_metrics
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.inventory import load_inventory
from tests.automation.sandbox.deployer import DeployerAccess

runner = CliRunner()


def put_in_service(sandbox, counts: dict[str, list[int]], now: float, *, skip: str = "") -> None:
    """Per node group name, its in-service count at each of the last len(counts) minutes, oldest first."""
    fleet = load_inventory(sandbox.inventory)
    deployer = DeployerAccess(sandbox)
    for g in fleet.node_groups:
        if g.group.name == skip:
            continue
        values = counts[g.group.name]
        start = int(now // 60) * 60 - 60 * len(values)
        deployer.client(g.stack, "cloudwatch").put_metric_data(Namespace="AWS/AutoScaling", MetricData=[
            {"MetricName": "GroupInServiceInstances", "Value": float(v), "Unit": "None",
             "Timestamp": datetime.fromtimestamp(start + 60 * i, UTC),
             "Dimensions": [{"Name": "AutoScalingGroupName", "Value": g.group.asg_name}]}
            for i, v in enumerate(values)])


COUNTS = {"serve-h100": [2, 2, 3, 4], "train-h100": [5, 5, 4, 3], "train-h200": [4, 4, 4, 4]}


def test_the_series_are_the_group_metrics_summed_per_pool_and_consumer(sandbox):
    now = time.time()
    put_in_service(sandbox, COUNTS, now)
    fleet = load_inventory(sandbox.inventory)
    access = AwsAccess(fleet, operation="status")  # the operator role's own policy
    sandbox.reset_log()
    series, missing = capacity_metrics.read(fleet, access.client, now - 3600, now)
    assert missing == [] and series is not None
    reads = [r for r in sandbox.requests() if r["action"] == "GetMetricData"]
    assert len(reads) == 3 and {(r["service"], r["status"]) for r in reads} == {("cloudwatch", 200)}
    iam = sandbox.client.iam()
    assert iam["enforce"] is True and iam["denials"] == []  # allowed by the operator role's ReadFleetState
    by = {(s.pool, s.role): s for s in series}
    assert set(by) == {("h100-use1-az4", "inference"), ("h100-use1-az4", "training"), ("h200-use1-az6", "training")}
    for (pool, role), name in ((("h100-use1-az4", "inference"), "serve-h100"), (("h100-use1-az4", "training"), "train-h100"),
                               (("h200-use1-az6", "training"), "train-h200")):
        s = by[pool, role]
        assert s.times[0] == now - 3600 and s.times[-1] == now
        assert list(s.nodes[1:-1]) == COUNTS[name] and s.nodes[0] == 0 and s.nodes[-1] == COUNTS[name][-1]
        assert [b - a for a, b in zip(s.times[1:-1], s.times[2:-1], strict=False)] == [60.0] * (len(COUNTS[name]) - 1)


def test_the_chart_says_it_drew_the_metrics(sandbox, tmp_path):
    put_in_service(sandbox, COUNTS, time.time())
    png = tmp_path / "capacity.png"
    done = runner.invoke(app, ["status", "--inventory", str(sandbox.inventory), "--chart", str(png), "--hours", "1"],
                         env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f"drawn to {png}\nfrom CloudWatch GroupInServiceInstances\n" in done.stderr


def test_the_figure_names_its_source_under_the_title(tmp_path):
    from gpufleet.automation.capacity_history import CapacitySeries
    from gpufleet.automation.cli.charts import capacity_over_time

    series = [CapacitySeries(pool="p1", role="training", times=(0.0, 60.0, 3600.0), nodes=(0, 2, 2))]
    fig = capacity_over_time(series, {"p1": 4}, 0, 3600, tmp_path / "c.png", source="CloudWatch GroupInServiceInstances")
    assert fig._suptitle.get_text().splitlines() == ["capacity per pool and consumer, the last 1 h",
                                                     "from CloudWatch GroupInServiceInstances"]


def test_a_group_without_datapoints_falls_back_to_the_scaling_activities(sandbox):
    now = time.time()
    put_in_service(sandbox, COUNTS, now, skip="train-h200")
    fleet = load_inventory(sandbox.inventory)
    series, missing = capacity_metrics.read(fleet, AwsAccess(fleet, operation="status").client, now - 3600, now)
    assert series is None and missing == ["training/train-h200"]

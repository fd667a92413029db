"""The GPU fleet dashboard: valid Grafana JSON, filterable per account and pool, and reading only
metrics that the exporters publish (monitoring/dcgm-counters.csv, monitoring/metrics.yaml)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from gpufleet.infra import alert_rules
from gpufleet.infra.eks_workloads import dcgm_counters
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "monitoring" / "dashboards" / "gpu-fleet.json"


def exported_metrics() -> set[str]:
    catalog = yaml.safe_load((REPO / "monitoring" / "metrics.yaml").read_text())
    return set(dcgm_counters()) | {m for metrics in catalog.values() for m in metrics}


def panel_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """PromQL of every panel target and annotation (CloudWatch targets have none)."""
    panels = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    return panels + [(a["name"], a["expr"]) for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]


def test_dashboard_is_valid_json_with_unique_panel_ids_and_a_stable_uid():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "gpufleet-gpu-fleet"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10


def test_dashboard_has_account_and_pool_variables_and_gpu_panels_use_them():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "account", "pool"} <= set(variables)
    assert "account" in variables["pool"]["query"]["query"]  # pools narrow to the chosen accounts
    for title, expr in panel_expressions(dashboard):
        if "DCGM_FI_" in expr:
            assert 'account=~"$account"' in expr and 'pool=~"$pool"' in expr, title


def test_dashboard_and_rules_read_only_metrics_the_exporters_publish():
    known = exported_metrics()
    dashboard = json.loads(DASHBOARD.read_text())
    for title, expr in panel_expressions(dashboard):
        assert alert_rules.metric_names(expr) <= known, (title, alert_rules.metric_names(expr) - known)
    for rule_file in alert_rules.load_rule_files():
        for expr in rule_file.expressions:
            assert alert_rules.metric_names(expr) <= known, (rule_file.source, alert_rules.metric_names(expr) - known)


def test_metric_name_scan_sees_through_promql_syntax():
    expr = 'sum by (node) (rate(DCGM_FI_DEV_POWER_VIOLATION{pool=~"$pool"}[5m])) / 1e6 > 0.1 or vector(0)'
    assert alert_rules.metric_names(expr) == {"DCGM_FI_DEV_POWER_VIOLATION"}
    assert alert_rules.metric_names("NOT_EXPORTED_total > 0") == {"NOT_EXPORTED_total"}
    assert alert_rules.metric_names("up != up offset 5m") == {"up"}


GRAFANA_VARIABLES = {"$account": ".*", "$pool": ".*", "$__rate_interval": "5m", "$__range": "1h",
                     "$__interval": "1m"}


def as_rule_file(expressions: list[tuple[str, str]]) -> str:
    """Every expression as a recording rule, Grafana's variables filled in as Grafana does."""
    rules = []
    for i, (_, expr) in enumerate(expressions):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


@pytest.mark.promtool
def test_every_dashboard_query_is_promql_promtool_parses(tmp_path: Path):
    expressions = panel_expressions(json.loads(DASHBOARD.read_text()))
    path = tmp_path / "dashboard.yaml"

    def check(text: str) -> subprocess.CompletedProcess[str]:
        path.write_text(text)
        return subprocess.run([require_binary("promtool"), "check", "rules", str(path)],
                              capture_output=True, text=True, timeout=60)

    result = check(as_rule_file(expressions))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout
    # The parser really reads them: an unbalanced parenthesis fails.
    broken = [*expressions[:-1], (expressions[-1][0], expressions[-1][1] + ")")]
    assert check(as_rule_file(broken)).returncode != 0


def test_dashboard_shows_capacity_per_consumer_idle_capacity_moves_and_a_health_grid():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    capacity = next(p for t, p in panels.items() if t.startswith("Capacity per consumer"))
    assert "count by (account, stack, pool)" in capacity["targets"][0]["expr"]
    idle = [p for t, p in panels.items() if "Idle reserved" in t or "Unoccupied reservation" in t]
    assert {p["datasource"]["type"] for p in idle} == {"prometheus", "cloudwatch"}
    cloudwatch = next(p for p in idle if p["datasource"]["type"] == "cloudwatch")["targets"][0]
    assert (cloudwatch["namespace"], cloudwatch["metricName"]) == ("AWS/EC2CapacityReservations",
                                                                    "AvailableInstanceCount")
    [moves] = [a for a in dashboard["annotations"]["list"] if a["name"] == "Capacity moves"]
    assert "offset 5m" in moves["expr"] and moves["datasource"]["uid"] == "${datasource}"
    grid = next(p for t, p in panels.items() if t.startswith("Health checks: node by check"))
    assert grid["transformations"] == [{"id": "groupingToMatrix", "options": {
        "columnField": "check", "rowField": "node", "valueField": "Value"}}]
    assert "gpufleet_health_check_status" in grid["targets"][0]["expr"]

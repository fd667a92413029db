"""The GPU fleet dashboard: valid Grafana JSON, filterable per account and pool, and reading only
metrics that the exporters publish (monitoring/dcgm-counters.csv, monitoring/metrics.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gpufleet.infra import alert_rules
from gpufleet.infra.eks_workloads import dcgm_counters

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "monitoring" / "dashboards" / "gpu-fleet.json"


def exported_metrics() -> set[str]:
    catalog = yaml.safe_load((REPO / "monitoring" / "metrics.yaml").read_text())
    return set(dcgm_counters()) | {m for metrics in catalog.values() for m in metrics}


def panel_expressions(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


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

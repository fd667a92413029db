"""What `gpufleet usage --by job` reads on EKS is deployed (rendered inference stack): the collector's
chart, pinned, runs kube-state-metrics, scrapes it, labels every series with the stack and
remote-writes them without dropping a label the usage query joins on."""

from __future__ import annotations

import re

from gpufleet.automation.usage import pods
from gpufleet.infra import eks_workloads

QUERY_LABELS = {"stack", "namespace", "pod", "owner_kind", "owner_name", "resource", "phase"}


def test_kube_state_metrics_is_deployed_scraped_and_remote_written(rendered_fleet):
    releases = rendered_fleet["inference"].of_type("kubernetes:helm.sh/v3:Release")
    [collector] = [r for r in releases if str(r.inputs.get("chart", "")).rsplit("/", 1)[-1] == eks_workloads.PROMETHEUS.name]
    assert collector.inputs["version"] == eks_workloads.PROMETHEUS.version  # the chart pins its kube-state-metrics
    values = collector.inputs["values"]
    assert values["kube-state-metrics"]["enabled"] is True
    config = values["serverFiles"]["prometheus.yml"]
    assert "kube-state-metrics" in {job["job_name"] for job in config["scrape_configs"]}
    assert config["global"]["external_labels"]["stack"] == "inference"
    [remote] = config["remote_write"]
    assert remote["url"].endswith("/api/v1/remote_write") and "sigv4" in remote
    for rule in remote.get("write_relabel_configs", []):
        if rule.get("action") in ("labeldrop", "labelkeep"):
            dropped = {label for label in QUERY_LABELS if re.fullmatch(rule["regex"], label)}
            assert not dropped if rule["action"] == "labeldrop" else dropped == QUERY_LABELS, rule
    # Every metric the query names is one kube-state-metrics exports by default.
    names = set(re.findall(r"\b(kube_[a-z_]+)\{", pods.promql(["inference"], pods.DEFAULT_STEP_S)))
    assert names == {"kube_pod_container_resource_requests", "kube_pod_status_phase", "kube_pod_owner"}

"""The collector's prometheus.yml: labels the rules group by, and SigV4 remote write, checked by promtool.

Debian's Prometheus is built without Kubernetes service discovery, so promtool sees the Kubernetes
jobs' relabelling grafted onto a static target; the rest of the file is checked as rendered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from gpufleet.infra import metrics_agent
from tests.conftest import require_binary

URL = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
ROLE = "arn:aws:iam::111111111111:role/gpufleet-metrics-remote-write"


def config(scrape_configs):
    return metrics_agent.prometheus_config(account_id="222222222222", stack="training", region="us-east-1",
                                           remote_write_url=URL, remote_write_role_arn=ROLE,
                                           scrape_configs=scrape_configs)


@pytest.mark.promtool
def test_promtool_accepts_the_collector_config(tmp_path: Path):
    jobs = [{"job_name": job["job_name"], "static_configs": [{"targets": ["127.0.0.1:9400"]}],
             "relabel_configs": job["relabel_configs"]} for job in metrics_agent.kubernetes_scrape_configs()]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(jobs)))
    result = subprocess.run([require_binary("promtool"), "check", "config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_series_get_the_labels_the_alert_rules_group_by():
    rendered = config(metrics_agent.kubernetes_scrape_configs())
    assert rendered["global"]["external_labels"] == {"account": "222222222222", "stack": "training"}
    jobs = {j["job_name"]: j for j in rendered["scrape_configs"]}
    assert set(jobs) == {"dcgm", "node", "kube-state-metrics"}
    for job in ("dcgm", "node"):
        targets = {r.get("target_label"): r["source_labels"][0] for r in jobs[job]["relabel_configs"]}
        assert targets["pool"] == "__meta_kubernetes_node_label_gpufleet_io_capacity_pool"
        assert targets["node_group"] == "__meta_kubernetes_node_label_gpufleet_io_node_group"
        assert targets["node"] == "__meta_kubernetes_pod_node_name"
        assert jobs[job]["kubernetes_sd_configs"] == [{"role": "pod", "attach_metadata": {"node": True}}]
    [remote] = rendered["remote_write"]
    assert remote["url"] == URL and remote["sigv4"] == {"region": "us-east-1", "role_arn": ROLE}


def test_remote_write_must_be_https():
    with pytest.raises(ValueError, match="remote_write_url"):
        metrics_agent.prometheus_config(account_id="222222222222", stack="t", region="us-east-1",
                                        remote_write_url="http://plain", remote_write_role_arn=ROLE, scrape_configs=[])

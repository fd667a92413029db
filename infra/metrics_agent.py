"""The collector's Prometheus configuration: what it scrapes on a cluster's nodes, the labels every
series gets (account, stack, pool, node_group, node: the alert rules and the dashboard group by
them), and the remote write into the platform's Managed Prometheus. Pure: no pulumi import.

``promtool check config`` validates the rendered file in the tests.
"""

from __future__ import annotations

import re
from typing import Any

from gpufleet.infra import eks_scheduling
from gpufleet.lifecycle import layout

TEXTFILE_DIR = layout.TEXTFILE_DIR
"""Where node-side jobs (health checks, training metrics) drop ``*.prom`` files for node_exporter's
textfile collector: the same directory on Slurm, plain and EKS nodes (the bootstrap writes there)."""
COLLECTOR_NAMESPACE = "gpufleet-monitoring"
"""Namespace of the exporters and the collector on EKS."""
COLLECTOR_SERVICE_ACCOUNT = "gpufleet-metrics-collector"
"""Service account of the collector; Pod Identity maps it to the account's collector role."""
SCRAPE_INTERVAL = "30s"
REMOTE_WRITE_QUEUE = {"capacity": 10000, "max_samples_per_send": 2000, "max_shards": 50}
"""AMP accepts up to 1 MB per request; 2000 samples per send stays well inside it."""


def _label_of(node_label: str) -> str:
    """Prometheus meta label of a Kubernetes node label (every non-alphanumeric becomes _)."""
    return "__meta_kubernetes_node_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", node_label)


def _pod_job(job: str, app_label: str, app: str) -> dict[str, Any]:
    """Scrape pods of one app on every node, labelled with the node's pool and group."""
    return {
        "job_name": job,
        "kubernetes_sd_configs": [{"role": "pod", "attach_metadata": {"node": True}}],
        "relabel_configs": [
            {"source_labels": [f"__meta_kubernetes_pod_label_{app_label}"], "regex": app, "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"source_labels": [_label_of(eks_scheduling.CAPACITY_POOL_LABEL)], "target_label": "pool"},
            {"source_labels": [_label_of(eks_scheduling.NODE_GROUP_LABEL)], "target_label": "node_group"},
        ],
    }


def kubernetes_scrape_configs() -> list[dict[str, Any]]:
    """dcgm-exporter, node_exporter (with the textfile collector) and kube-state-metrics on EKS."""
    kube_state = {
        "job_name": "kube-state-metrics",
        "kubernetes_sd_configs": [{"role": "service"}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
             "regex": "kube-state-metrics", "action": "keep"},
        ],
    }
    return [_pod_job("dcgm", "app_kubernetes_io_name", "dcgm-exporter"),
            _pod_job("node", "app_kubernetes_io_name", "prometheus-node-exporter"),
            kube_state]


SLURM_HEAD_NODE = "slurm-head"
"""``node`` label of the head's own node_exporter."""
COLLECTOR_PROFILE = "gpufleet-collector"
"""AWS config profile of the Slurm head collector: the head's instance role assumes the account's
collector role, whose credentials then assume the platform's remote-write role (``sigv4.role_arn``)."""


def slurm_scrape_configs(pools_by_group: dict[str, str], *,
                         targets_dir: str = f"{layout.COLLECTOR_DIR}/targets") -> list[dict[str, Any]]:
    """node_exporter and dcgm-exporter on every Slurm node, found through the file-based discovery
    files ``gpufleet.lifecycle.slurm.scrape_targets`` writes from slurmctld's node list (labels
    ``node``, ``node_group``); ``pool`` follows from the group (one pool per group, the stack file).
    The head scrapes its own node_exporter too."""
    pool_rules = [{"source_labels": ["node_group"], "regex": re.escape(group), "target_label": "pool",
                   "replacement": pool} for group, pool in sorted(pools_by_group.items())]
    jobs = []
    for job, port in sorted(layout.EXPORTER_PORTS.items()):
        entry: dict[str, Any] = {"job_name": job,
                                 "file_sd_configs": [{"files": [f"{targets_dir}/{job}.json"],
                                                      "refresh_interval": "1m"}],
                                 "relabel_configs": [dict(r) for r in pool_rules]}
        if job == "node":
            entry["static_configs"] = [{"targets": [f"127.0.0.1:{port}"],
                                        "labels": {"node": SLURM_HEAD_NODE, "node_group": "head"}}]
        jobs.append(entry)
    return jobs


def collector_aws_config(*, region: str, collector_role_arn: str) -> str:
    """The head collector's AWS config file (``AWS_CONFIG_FILE``): the profile Prometheus's SigV4
    client starts from. EC2 instance metadata gives the head role; the profile assumes the
    collector role (the one principal the platform's remote-write role trusts)."""
    return (f"[profile {COLLECTOR_PROFILE}]\n"
            f"role_arn = {collector_role_arn}\n"
            "credential_source = Ec2InstanceMetadata\n"
            f"region = {region}\n"
            "sts_regional_endpoints = regional\n")


def prometheus_config(*, account_id: str, stack: str, region: str, remote_write_url: str,
                      remote_write_role_arn: str, scrape_configs: list[dict[str, Any]],
                      profile: str | None = None) -> dict[str, Any]:
    """The collector's prometheus.yml: external labels, scrape jobs, SigV4 remote write through the
    platform's role (the collector's own credentials come from Pod Identity, or on the Slurm head
    from ``profile`` in its AWS config file)."""
    if not remote_write_url.startswith("https://"):
        raise ValueError(f"remote_write_url: {remote_write_url!r} must be an https URL")
    sigv4 = {"region": region, "role_arn": remote_write_role_arn}
    if profile is not None:
        sigv4["profile"] = profile
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL,
                   "external_labels": {"account": account_id, "stack": stack}},
        "scrape_configs": scrape_configs,
        "remote_write": [{
            "url": remote_write_url,
            "sigv4": sigv4,
            "queue_config": dict(REMOTE_WRITE_QUEUE),
            # Series that would carry request payloads never leave the account (no PHI in labels).
            "write_relabel_configs": [{"regex": "(path|url|query|user|patient.*)", "action": "labeldrop"}],
        }],
    }

"""Listing, logs and cancelling of gpufleet jobs on EKS, through the official kubernetes client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpufleet.automation.jobs.k8s import JOB_LABEL
from gpufleet.automation.kube_client import call
from gpufleet.infra.errors import KubernetesError


@dataclass(frozen=True, kw_only=True)
class EksJob:
    """One row of ``gpufleet jobs ls --backend eks``."""

    name: str
    """Job name."""
    namespace: str
    """Namespace."""
    active: int
    """Pods running."""
    succeeded: int
    """Pods finished."""
    failed: int
    """Pod failures counted against backoffLimit."""


class EksJobs:
    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.core, self.batch, self.namespace = client.CoreV1Api(api_client), client.BatchV1Api(api_client), namespace

    def list(self) -> list[EksJob]:
        jobs = call("listing jobs", self.batch.list_namespaced_job, self.namespace, label_selector=JOB_LABEL)
        return [EksJob(name=j.metadata.name, namespace=j.metadata.namespace, active=j.status.active or 0,
                       succeeded=j.status.succeeded or 0, failed=j.status.failed or 0) for j in jobs.items]

    def logs(self, name: str, tail: int) -> str:
        pods = call("listing pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=f"{JOB_LABEL}={name}")
        if not pods.items:
            raise KubernetesError(f"job {self.namespace}/{name} has no pods")
        pod = min(pods.items, key=lambda p: p.metadata.name)  # index 0 hosts rank 0
        return call("reading logs", self.core.read_namespaced_pod_log, pod.metadata.name,
                          self.namespace, tail_lines=tail)

    def cancel(self, name: str) -> None:
        call("deleting job", self.batch.delete_namespaced_job, name, self.namespace,
                   propagation_policy="Foreground")
        call("deleting service", self.core.delete_namespaced_service, name, self.namespace)

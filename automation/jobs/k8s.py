"""Render a job file as Kubernetes manifests and submit them with the official client.

An indexed Job (one pod per node, ``completionMode: Indexed``) plus a headless Service whose name is
the pods' ``subdomain``, so pod 0 resolves as ``<job>-0.<job>`` and hosts the c10d rendezvous.
Worker crashes are restarted by torchrun inside the pod; a failed pod is recreated by the Job
controller up to ``backoffLimit`` (= max_restarts); evictions and preemptions (the pod condition
``DisruptionTarget``, set when the rebalancer drains a node) and the runtime's stop code 143 do not
count against it, every other non-zero exit does. The Job carries its Kueue LocalQueue's label.
Limitation: if pod 0 itself is replaced, the survivors' rendezvous restarts against the new pod 0
through the same DNS name, which costs one rendezvous timeout.
"""

from __future__ import annotations

import contextlib
from typing import Any

from gpufleet.automation.jobs.spec import JobSpec
from gpufleet.automation.kube_client import refusal
from gpufleet.infra.eks_scheduling import (
    EFA_RESOURCE,
    GPU_RESOURCE,
    POOL_ROLE_LABEL,
    gpu_tolerations,
)
from gpufleet.infra.errors import KubernetesError
from gpufleet.lifecycle.exit_codes import REQUEUE_EXIT_CODE

JOB_LABEL = "gpufleet.io/job"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""The Job label naming its Kueue LocalQueue; Kueue admits (unsuspends) only Jobs that carry it."""


def render_manifests(spec: JobSpec) -> list[dict[str, Any]]:
    labels = {JOB_LABEL: spec.name, "app.kubernetes.io/managed-by": "gpufleet"}

    def meta() -> dict[str, Any]:
        return {"name": spec.name, "namespace": spec.namespace, "labels": dict(labels)}

    endpoint = f"{spec.name}-0.{spec.name}.{spec.namespace}.svc:{spec.rdzv_port}"
    resources = {GPU_RESOURCE: spec.gpus_per_node}
    if spec.efa:
        resources[EFA_RESOURCE] = spec.efa_interfaces
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image,
        "command": spec.torchrun_args(str(spec.nodes), endpoint, spec.name),
        "env": [{"name": k, "value": v} for k, v in spec.job_env().items()],
        "ports": [{"name": "rendezvous", "containerPort": spec.rdzv_port}],
        "resources": {"limits": {k: str(v) for k, v in resources.items()}},
        "volumeMounts": [{"name": "fsx", "mountPath": spec.fsx_mount_path},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if spec.workdir:
        container["workingDir"] = spec.workdir
    pod_spec: dict[str, Any] = {
        "subdomain": spec.name,
        "restartPolicy": "Never",  # podFailurePolicy requires it; torchrun restarts workers in-pod
        "nodeSelector": {POOL_ROLE_LABEL: spec.pool},
        "tolerations": gpu_tolerations(),
        # Time for the workers to save after SIGTERM before the kubelet kills them.
        "terminationGracePeriodSeconds": max(spec.signal_before_s, 30),
        "containers": [container],
        "volumes": [{"name": "fsx", "persistentVolumeClaim": {"claimName": spec.fsx_claim}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.nodes,
        "parallelism": spec.nodes,
        "backoffLimit": spec.max_restarts,
        "podFailurePolicy": {"rules": [
            # The runtime's stop code (saved, asked to stop): not a failure.
            {"action": "Ignore", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                 "values": [REQUEUE_EXIT_CODE]}},
            # Evictions and preemptions (the rebalancer's drain). The API requires the condition's status.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            # Every other non-zero exit is a real failure and counts against backoffLimit.
            {"action": "Count", "onExitCodes": {"containerName": "trainer", "operator": "NotIn", "values": [0]}},
        ]},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if spec.time_limit_s is not None:
        job_spec["activeDeadlineSeconds"] = spec.time_limit_s
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {JOB_LABEL: spec.name},
                 "ports": [{"name": "rendezvous", "port": spec.rdzv_port}]},
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(), "spec": job_spec}
    if spec.queue:
        job["metadata"]["labels"][QUEUE_LABEL] = spec.queue
    return [service, job]


def submit_manifests(manifests: list[dict[str, Any]], api_client: Any) -> str:
    """Create the Service, then the Job; returns ``namespace/name`` of the Job."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    job_ref = ""
    created: list[tuple[str, str]] = []
    for m in manifests:
        ns, name = m["metadata"]["namespace"], m["metadata"]["name"]
        try:
            if m["kind"] == "Service":
                core.create_namespaced_service(ns, m)
                created.append((ns, name))
            else:
                batch.create_namespaced_job(ns, m)
                job_ref = f"{ns}/{name}"
        except ApiException as error:
            for svc_ns, svc_name in created:  # leave nothing half submitted
                with contextlib.suppress(ApiException):
                    core.delete_namespaced_service(svc_name, svc_ns)
            hint = "delete the old job first: gpufleet jobs cancel NAME --backend eks" if error.status == 409 else None
            raise KubernetesError(f"creating {m['kind']} {ns}/{name}: {refusal(error)}", hint) from None
    return job_ref

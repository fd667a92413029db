"""The health probe on EKS: a Kubernetes Job pinned to the new node runs the node's health code.

The Job's pod is pinned to the node by node affinity on its name (as DaemonSets pin theirs),
tolerates the hold taint ``gpufleet.io/unverified`` and the GPU taint ``nvidia.com/gpu`` (nothing
else lands on a held node), asks for every GPU and EFA interface the instance type has (the
catalog), and runs ``python -m gpufleet.lifecycle.health --json`` from the node image in the
cluster's private registry mirror. The report is read back through the API: the pod's log.
Nodes map to instances by ``spec.providerID`` (``aws:///<az>/<instance id>``); the instance type is
the node's well-known label ``node.kubernetes.io/instance-type``, else the probe's default.
The deep tier's peer all-reduce (``allreduce_with``) is an Indexed Job over the new node and its
peer (``kube_pair.py``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gpufleet.automation.health.probe import entry_argv, probe_failure, report_from_output
from gpufleet.automation.kube_client import call
from gpufleet.automation.orchestrators.base import UNVERIFIED
from gpufleet.infra.eks_scheduling import HEALTH_GATE_NAMESPACE
from gpufleet.infra.errors import KubernetesError
from gpufleet.lifecycle.health.results import NodeReport, Tier
from gpufleet.lifecycle.instance_types import InstanceFacts, UnknownInstanceTypeError, lookup

NAMESPACE = HEALTH_GATE_NAMESPACE
JOB_LABEL = "gpufleet.io/health-gate"
GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
DONE_PHASES = ("Succeeded", "Failed")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def job_name(instance_id: str) -> str:
    """A DNS-1123 name unique per probe: ``gpufleet-health-<instance id>-<random>``."""
    return f"gpufleet-health-{re.sub(r'[^a-z0-9-]', '-', instance_id.lower())}-{uuid.uuid4().hex[:6]}"


def health_job(*, name: str, node_name: str, instance_id: str, instance: InstanceFacts, image: str,
               tiers: Sequence[Tier], timeout_s: int, namespace: str = NAMESPACE, python: str = "python3",
               dcgm_level: int = 2, node_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Job manifest (a plain dict, as the API takes it); ``node_env`` adds to (or overrides) the
    container's environment."""
    resources: dict[str, str] = {}
    if instance.gpus:
        resources[GPU_RESOURCE] = str(instance.gpus)
    if instance.efa_interfaces:
        resources[EFA_RESOURCE] = str(instance.efa_interfaces)
    labels = {JOB_LABEL: "true", "app.kubernetes.io/name": "gpufleet-health-gate"}
    argv = entry_argv(tiers, instance_id, dcgm_level)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {**labels, "gpufleet.io/instance-id": instance_id}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": timeout_s,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}},
                    "tolerations": [
                        {"key": UNVERIFIED, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "health",
                        "image": image,
                        "command": [python, *argv],
                        "env": [{"name": k, "value": v} for k, v in {
                            "GPUFLEET_INSTANCE_TYPE": instance.name, "GPUFLEET_NODE_NAME": node_name,
                            **(node_env or {})}.items()],
                        "resources": {"requests": resources, "limits": resources},
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                },
            },
        },
    }


class KubernetesJobProbe:
    """Runs the checks on a node of an EKS cluster as a Job pinned to it (module docstring)."""

    max_parallel = 16

    def __init__(self, api: Any, *, image: str, instance_type: str = "",
                 namespace: str = NAMESPACE, timeout_s: float = 1800.0, poll_s: float = 2.0, dcgm_level: int = 2,
                 sleep: Callable[[float], None] = time.sleep, node_env: Mapping[str, str] | None = None,
                 pair_port: int = 29512, immediate_s: int = 120) -> None:
        """``instance_type``: for a node without the instance-type label (its group's type);
        ``node_env``: more environment for the checks' containers; ``pair_port``: the peer
        all-reduce's rendezvous port; ``immediate_s``: how long a pair's pod may stay unscheduled."""
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.image = image
        self.instance_type = instance_type
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.dcgm_level = dcgm_level
        self.sleep = sleep
        self.node_env = dict(node_env or {})
        self.pair_port = pair_port
        self.immediate_s = immediate_s

    def peer_candidates(self, nodes: Sequence[str]) -> list[Any]:
        """Every node of the cluster as a ``PeerCandidate`` (pool label, node group, hold, health)."""
        from gpufleet.automation.health import kube_pair

        return kube_pair.candidates(call("list nodes", self.core.list_node).items,
                                    call("list pods", self.core.list_pod_for_all_namespaces).items)

    def allreduce_with(self, node: str, peer: str) -> NodeReport:
        """The two-node all-reduce as an Indexed Job over ``node`` and ``peer`` (kube_pair.py);
        the newcomer's report."""
        from gpufleet.automation.health import kube_pair

        tiers = (Tier.DEEP,)
        try:
            new, other = self._node(node), self._node(peer)
            if new is None or other is None:
                return probe_failure(node, tiers, f"no Kubernetes node with instance id {node if new is None else peer}")
            try:
                instance = lookup(new[1])
            except UnknownInstanceTypeError:
                return probe_failure(node, tiers, f"node {new[0]}: instance type {new[1]!r} not in the catalog")
            name = kube_pair.pair_name(node)
            labels = {JOB_LABEL: "true", "app.kubernetes.io/name": "gpufleet-health-pair"}
            service = kube_pair.pair_service(name=name, namespace=self.namespace, port=self.pair_port)
            job = kube_pair.pair_job(name=name, new_node=new[0], peer_node=other[0], instance_id=node,
                                     instance=instance, image=self.image, port=self.pair_port,
                                     timeout_s=int(self.timeout_s), namespace=self.namespace, labels=labels,
                                     node_env=self.node_env)
            call("create service", self.core.create_namespaced_service, self.namespace, service)
            try:
                call("create job", self.batch.create_namespaced_job, self.namespace, job)
                try:
                    return kube_pair.wait_pair(self, node, name, new[0])
                finally:
                    call("delete job", self.batch.delete_namespaced_job, name, self.namespace,
                         propagation_policy="Background")
            finally:
                call("delete service", self.core.delete_namespaced_service, name, self.namespace)
        except KubernetesError as err:
            return probe_failure(node, tiers, f"all-reduce with {peer}: {err.message}")

    def _node(self, instance_id: str) -> tuple[str, str] | None:
        """(node name, instance type) of the instance's node."""
        for node in call("list nodes", self.core.list_node).items:
            if node.spec and (node.spec.provider_id or "").rsplit("/", 1)[-1] == instance_id:
                return node.metadata.name, (node.metadata.labels or {}).get(INSTANCE_TYPE_LABEL, self.instance_type)
        return None

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport:
        try:
            found = self._node(node)
            if found is None:
                return probe_failure(node, tiers, "no Kubernetes node with this instance id (not registered yet?)")
            node_name, instance_type = found
            try:
                instance = lookup(instance_type)
            except UnknownInstanceTypeError:
                return probe_failure(node, tiers, f"node {node_name}: instance type {instance_type!r} not in the catalog")
            name = job_name(node)
            manifest = health_job(name=name, node_name=node_name, instance_id=node, instance=instance,
                                  image=self.image, tiers=tiers, timeout_s=int(self.timeout_s),
                                  namespace=self.namespace, dcgm_level=self.dcgm_level, node_env=self.node_env)
            call("create job", self.batch.create_namespaced_job, self.namespace, manifest)
            try:
                return self._wait(node, tiers, name)
            finally:
                call("delete job", self.batch.delete_namespaced_job, name, self.namespace,
                     propagation_policy="Background")
        except KubernetesError as err:
            return probe_failure(node, tiers, err.message)

    def _wait(self, node: str, tiers: Sequence[Tier], name: str) -> NodeReport:
        deadline = time.monotonic() + self.timeout_s + 60
        while True:
            pods = call("list pods", self.core.list_namespaced_pod, self.namespace,
                        label_selector=f"job-name={name}").items
            done = [p for p in pods if p.status and p.status.phase in DONE_PHASES]
            if done:
                pod = done[0]
                log = call("read pod log", self.core.read_namespaced_pod_log, pod.metadata.name, self.namespace,
                           container="health")
                return report_from_output(node, tiers, log, f"Job {name} pod {pod.metadata.name} {pod.status.phase}")
            if time.monotonic() > deadline:
                phase = pods[0].status.phase if pods and pods[0].status else "not started"
                return probe_failure(node, tiers, f"Job {name}: pod {phase} at the deadline")
            self.sleep(self.poll_s)


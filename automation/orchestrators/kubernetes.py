"""The rebalancer's adapter for Kubernetes, over the official client (automation/kube_client.py
chooses the cluster): cordon, evict through the Eviction API, uncordon.

Evictions respect PodDisruptionBudgets: the API answers 429 while a budget forbids one, and the
pod stays for a later ``evict`` call (the executor retries, bounded by its drain timeout). Nodes
map to instances by ``spec.providerID`` (``aws:///<az>/<instance id>``). Pods publish their newest
checkpoint, when they do, in the annotation ``gpufleet.io/last-checkpoint`` (unix time).
DaemonSet and mirror pods are not work: they stay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from gpufleet.automation.kube_client import call, refusal
from gpufleet.automation.orchestrators.base import SPARE_TAINT, UNVERIFIED, NodeWork
from gpufleet.infra.errors import KubernetesError

CHECKPOINT_ANNOTATION = "gpufleet.io/last-checkpoint"


class KubernetesOrchestrator:
    kind = "eks"

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self._client = client

    def _nodes(self, instance_ids: Iterable[str]) -> dict[str, Any]:
        wanted = set(instance_ids)
        found = {}
        for node in call("list nodes", self.core.list_node).items:
            provider = (node.spec.provider_id or "") if node.spec else ""
            iid = provider.rsplit("/", 1)[-1]
            if iid in wanted:
                found[iid] = node
        return found

    def _work_pods(self, node_name: str) -> list[Any]:
        pods = call("list pods", self.core.list_pod_for_all_namespaces,
                          field_selector=f"spec.nodeName={node_name}").items
        out = []
        for pod in pods:
            meta = pod.metadata
            if (pod.status and pod.status.phase in ("Succeeded", "Failed")) or \
                    "kubernetes.io/config.mirror" in (meta.annotations or {}) or \
                    any(ref.kind == "DaemonSet" for ref in (meta.owner_references or [])):
                continue
            out.append(pod)
        return out

    def nodes_of(self, instance_ids: Iterable[str]) -> dict[str, Any]:
        """Instance id -> its Kubernetes node, for the instances that have one."""
        return self._nodes(instance_ids)

    def pods_on(self, node_name: str) -> list[Any]:
        """The work pods on a node (not DaemonSet, mirror, or finished pods)."""
        return self._work_pods(node_name)

    def work(self, instance_ids: Iterable[str]) -> list[NodeWork]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        out = []
        for iid in ids:
            if iid not in nodes:
                out.append(NodeWork(instance_id=iid, known=False, detail="no Kubernetes node"))
                continue
            pods = self._work_pods(nodes[iid].metadata.name)
            stamps = []
            for pod in pods:
                raw = (pod.metadata.annotations or {}).get(CHECKPOINT_ANNOTATION)
                if raw is not None:
                    with contextlib.suppress(ValueError):
                        stamps.append(float(raw))
            complete = bool(pods) and len(stamps) == len(pods)
            taints = (nodes[iid].spec.taints or []) if nodes[iid].spec else []
            out.append(NodeWork(instance_id=iid, busy=bool(pods), last_checkpoint=min(stamps) if complete else None,
                                detail=f"{nodes[iid].metadata.name} pods={len(pods)}",
                                spare=any(t.key == SPARE_TAINT for t in taints)))
        return out

    def _cordon(self, instance_ids: Iterable[str], unschedulable: bool) -> None:
        for node in self._nodes(instance_ids).values():
            call("patch node", self.core.patch_node, node.metadata.name, {"spec": {"unschedulable": unschedulable}})

    def request_checkpoint(self, instance_ids: Iterable[str], reason: str) -> None:
        # Cordon only: the eviction's SIGTERM is the checkpoint signal a pod gets.
        self._cordon(instance_ids, True)

    def jobs(self, instance_ids: Iterable[str]) -> list[Any]:
        return []  # pods publish no checkpoint time: the grace is the operator's, or the default

    def evict(self, instance_ids: Iterable[str]) -> None:
        from kubernetes.client.exceptions import ApiException

        for node in self._nodes(instance_ids).values():
            for pod in self._work_pods(node.metadata.name):
                body = self._client.V1Eviction(metadata=self._client.V1ObjectMeta(
                    name=pod.metadata.name, namespace=pod.metadata.namespace))
                try:
                    self.core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                except ApiException as err:
                    if err.status in (429, 404):
                        continue  # 429: a disruption budget forbids it now; 404: already gone
                    raise KubernetesError(f"evicting {pod.metadata.namespace}/{pod.metadata.name}: {refusal(err)}") from None

    def drained(self, instance_ids: Iterable[str]) -> set[str]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        return {iid for iid in ids if iid not in nodes or not self._work_pods(nodes[iid].metadata.name)}

    def undrain(self, instance_ids: Iterable[str]) -> None:
        self._cordon(instance_ids, False)

    def admit(self, instance_ids: Iterable[str]) -> None:
        for node in self._nodes(instance_ids).values():
            taints = list((node.spec.taints or []) if node.spec else [])
            kept = [t for t in taints if t.key != UNVERIFIED]
            if len(kept) != len(taints):
                body = {"spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in kept]}}
                call("patch node", self.core.patch_node, node.metadata.name, body)

    def ready(self, instance_ids: Iterable[str]) -> set[str]:
        out = set()
        for iid, node in self._nodes(instance_ids).items():
            conditions = (node.status.conditions or []) if node.status else []
            is_ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            held = any(t.key == UNVERIFIED for t in ((node.spec.taints or []) if node.spec else []))
            if is_ready and not held and not (node.spec and node.spec.unschedulable):
                out.add(iid)
        return out

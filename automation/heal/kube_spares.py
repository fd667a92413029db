"""Hot spares on EKS: nodes of the pool's training group launched, gated and held, so a
replacement is a swap instead of a boot.

A spare is a gated node cordoned and tainted ``gpufleet.io/spare=true:NoSchedule`` (its gate's
``gpufleet.io/unverified`` lifted in the same patch, so it is never schedulable in between): no
pod lands on it, the healer reads it as a spare (no fault signal), the rebalancer as no
consumer's. A swap lifts the spare's taint and uncordons it as the faulty node is cordoned,
before the eviction, so the evicted pods land on it; the faulty node is replaced as a plain
replacement is, and its newcomer, once gated, is held as the new spare instead of admitted. Only
the healer, under the pool's lease, moves a node in or out of this state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpufleet.automation.kube_client import call
from gpufleet.automation.orchestrators.base import SPARE_TAINT as SPARE_KEY
from gpufleet.automation.orchestrators.base import UNVERIFIED
from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator

__all__ = ["SPARE_TAINT", "admit_spare", "hold_as_spare", "is_spare"]

SPARE_TAINT = {"key": SPARE_KEY, "value": "true", "effect": "NoSchedule"}


def _taints(node: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in (("key", t.key), ("value", t.value), ("effect", t.effect)) if v is not None}
            for t in ((node.spec.taints or []) if node.spec else [])]


def is_spare(node: Any) -> bool:
    return any(t["key"] == SPARE_TAINT["key"] for t in _taints(node))


def hold_as_spare(kube: KubernetesOrchestrator, instance_ids: Iterable[str]) -> list[str]:
    """Hold the gated newcomers as spares: cordoned, the spare taint on and the gate's hold off, in
    one patch. Returns the nodes held; a newcomer not registered yet is skipped (the caller polls)."""
    held = []
    for node in sorted(kube.nodes_of(instance_ids).values(), key=lambda n: n.metadata.name):
        taints = [t for t in _taints(node) if t["key"] not in (UNVERIFIED, SPARE_TAINT["key"])]
        call("patch node", kube.core.patch_node, node.metadata.name,
             {"spec": {"unschedulable": True, "taints": [*taints, dict(SPARE_TAINT)]}})
        held.append(node.metadata.name)
    return held


def admit_spare(kube: KubernetesOrchestrator, name: str) -> None:
    """Let the spare take work now: its taint lifted, uncordoned (idempotent)."""
    node = call("read node", kube.core.read_node, name)
    taints = [t for t in _taints(node) if t["key"] != SPARE_TAINT["key"]]
    call("patch node", kube.core.patch_node, name, {"spec": {"unschedulable": False, "taints": taints}})

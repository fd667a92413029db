"""How GPU nodes are marked in Kubernetes, and which pods may land on them. Pure: no pulumi import.

The node groups set these labels and taints; the device plugins, dcgm-exporter, Kueue flavors and
the guardrails read them from here, so the two sides cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

GPU_RESOURCE = "nvidia.com/gpu"
"""Extended resource of the NVIDIA device plugin."""
EFA_RESOURCE = "vpc.amazonaws.com/efa"
"""Extended resource of the EFA device plugin (one per EFA interface)."""
POOL_ROLE_LABEL = "gpufleet.io/pool"
"""What the GPUs are for: ``training`` or ``inference`` (the stack's role)."""
CAPACITY_POOL_LABEL = "gpufleet.io/capacity-pool"
"""The platform pool the node's capacity comes from (h100-use1-az4)."""
NODE_GROUP_LABEL = "gpufleet.io/node-group"
"""The stack's node group name."""
SYSTEM_LABEL = "gpufleet.io/system"
"""Set on the small CPU node group that runs cluster add-ons."""
HEALTH_GATE_NAMESPACE = "gpufleet-system"
"""Where the health gate's probe Jobs (and the peer all-reduce's Service) run."""

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_EFFECT = "NO_SCHEDULE"
"""EKS API spelling; Kubernetes spells it NoSchedule."""
KUBERNETES_EFFECT = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute",
                     "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
POOL_ROLES = ("training", "inference")


@dataclass(frozen=True, kw_only=True)
class Taint:
    key: str
    """Taint key."""
    value: str | None
    """Taint value; None for a key-only taint."""
    effect: str
    """EKS API spelling: NO_SCHEDULE, NO_EXECUTE or PREFER_NO_SCHEDULE."""


GPU_TAINT = Taint(key=GPU_TAINT_KEY, value="present", effect=GPU_TAINT_EFFECT)
"""Keeps pods that did not ask for a GPU off GPU nodes (they cost about $100 an hour)."""
HOLD_TAINT = Taint(key="gpufleet.io/unverified", value="true", effect="NO_SCHEDULE")
"""Every GPU node registers with it; only the health gate's probe tolerates it, and the rebalancer
lifts it (by key) when the gate passes, so a new node serves nothing before it is verified."""
GPU_NODE_TAINTS = (HOLD_TAINT, GPU_TAINT)
"""The taints of every GPU node group, at registration."""


def kubelet_taint(taint: Taint) -> str:
    """``key=value:Effect``, the kubelet's ``--register-with-taints`` spelling."""
    value = f"={taint.value}" if taint.value is not None else ""
    return f"{taint.key}{value}:{KUBERNETES_EFFECT[taint.effect]}"


def gpu_node_labels(pool_role: str, capacity_pool: str, node_group: str) -> dict[str, str]:
    """Labels of every node of a GPU node group."""
    if pool_role not in POOL_ROLES:
        raise ValueError(f"pool_role: {pool_role!r} must be one of {', '.join(POOL_ROLES)}")
    if not capacity_pool or not node_group:
        raise ValueError("capacity_pool and node_group must be non-empty")
    return {POOL_ROLE_LABEL: pool_role, CAPACITY_POOL_LABEL: capacity_pool, NODE_GROUP_LABEL: node_group}


def gpu_tolerations() -> list[dict[str, str]]:
    """Kubernetes tolerations for pods that belong on GPU nodes (device plugins, exporters, jobs)."""
    return [{"key": GPU_TAINT.key, "operator": "Exists", "effect": KUBERNETES_EFFECT[GPU_TAINT.effect]}]


def node_agent_tolerations() -> list[dict[str, str]]:
    """Tolerations of the GPU nodes' own agents (device plugins, dcgm-exporter): they must run on a
    held node too, or its GPUs and EFA interfaces are never advertised and the gate's probe, which
    requests them, never schedules. Workloads get ``gpu_tolerations`` only."""
    return [*gpu_tolerations(),
            {"key": HOLD_TAINT.key, "operator": "Exists", "effect": KUBERNETES_EFFECT[HOLD_TAINT.effect]}]


def gpu_node_affinity() -> dict[str, object]:
    """Node affinity: only nodes of a gpufleet GPU node group."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": POOL_ROLE_LABEL, "operator": "In", "values": list(POOL_ROLES)}]}]}}}

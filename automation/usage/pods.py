"""GPU-hours per Kubernetes job, from kube-state-metrics in the central Prometheus.

Pure: PromQL out, query_range results in, GPU-seconds per (stack, namespace, owner) out. A pod counts
while it is Running, for the GPUs its containers request (``nvidia.com/gpu``, which kube-state-metrics
exports as ``resource="nvidia_com_gpu"``): requested, not used, as EKS split cost allocation bills.
Each evaluation step stands for the step that follows it, so the resolution is one step (the
collector's scrape interval by default); every selector looks back one step only
(``last_over_time(...[step - 1s])``), so a pod deleted while running stops counting one scrape after
its last sample, not after Prometheus's five-minute lookback. Like Slurm's jobs, pods are a breakdown:
they never add to the ledger's totals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.infra.errors import OrchestratorError

DEFAULT_STEP_S = 30
"""The collectors' scrape interval (gpufleet.infra.metrics_agent.SCRAPE_INTERVAL)."""
MAX_POINTS = 10_000
"""Steps per query_range call (Prometheus and AMP refuse more than 11,000 points a series)."""
NO_OWNER = "<none>"
"""kube-state-metrics' owner of a bare pod."""


@dataclass(frozen=True, kw_only=True)
class PodJobUsage:
    """GPU-seconds one job (a pod's owner, or a bare pod) requested while its pods ran."""

    stack: str
    namespace: str
    owner_kind: str
    """Job, ReplicaSet, StatefulSet, ... or ``Pod`` for a pod without an owner."""
    owner: str
    pods: int
    """Pods of this owner seen running in the period."""
    gpu_seconds: float
    first: float
    """First step a pod of it ran (epoch seconds)."""
    last: float
    """End of the last step a pod of it ran."""

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0


def promql(stacks: Sequence[str], step_s: int) -> str:
    """GPUs requested by each running pod, with its owner, of the given stacks' clusters."""
    match = "|".join(stacks)
    # One step back, less a second: exactly the last scrape, whether the range's left edge is closed
    # (Prometheus 2) or open (Prometheus 3); a scrape more than a second late loses that step.
    window = f"[{max(1, step_s - 1)}s]"
    requests = (f'sum by (stack, namespace, pod) (last_over_time(kube_pod_container_resource_requests'
                f'{{resource="nvidia_com_gpu", stack=~"{match}"}}{window}))')
    running = (f'(max by (stack, namespace, pod) (last_over_time(kube_pod_status_phase'
               f'{{phase="Running", stack=~"{match}"}}{window})) == 1)')
    owner = (f'max by (stack, namespace, pod, owner_kind, owner_name) '
             f'(last_over_time(kube_pod_owner{{stack=~"{match}"}}{window}))')
    return (f"sum by (stack, namespace, pod, owner_kind, owner_name) ("
            f"({requests} * on (stack, namespace, pod) group_left() {running})"
            f" * on (stack, namespace, pod) group_left(owner_kind, owner_name) {owner})")


def windows(start: float, end: float, step_s: int) -> list[tuple[float, float]]:
    """query_range windows (first and last evaluation, inclusive) covering the steps of ``[start, end)``."""
    steps = math.ceil((end - start) / step_s)
    out = []
    for first in range(0, steps, MAX_POINTS):
        last = min(steps, first + MAX_POINTS) - 1
        out.append((start + first * step_s, start + last * step_s))
    return out


def accumulate(series: Iterable[Mapping[str, Any]], start: float, end: float, step_s: int) -> list[PodJobUsage]:
    """query_range ``matrix`` results (any number of windows) as GPU-seconds per job."""
    seconds: dict[tuple[str, str, str, str], float] = {}
    pods: dict[tuple[str, str, str, str], set[str]] = {}
    span: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    for item in series:
        labels, values = item.get("metric") or {}, item.get("values") or []
        try:
            stack, namespace, pod = labels["stack"], labels["namespace"], labels["pod"]
        except KeyError as missing:
            raise OrchestratorError(f"Prometheus: a series without the label {missing} ({labels})") from None
        kind, owner = labels.get("owner_kind", NO_OWNER), labels.get("owner_name", NO_OWNER)
        if kind == NO_OWNER or owner == NO_OWNER:
            kind, owner = "Pod", pod
        key = (stack, namespace, kind, owner)
        for at, value in values:
            t, gpus = float(at), float(value)
            if gpus <= 0 or not start <= t < end:
                continue
            until = min(t + step_s, end)
            seconds[key] = seconds.get(key, 0.0) + gpus * (until - t)
            pods.setdefault(key, set()).add(pod)
            lo, hi = span.get(key, (t, until))
            span[key] = (min(lo, t), max(hi, until))
    return sorted((PodJobUsage(stack=k[0], namespace=k[1], owner_kind=k[2], owner=k[3], pods=len(pods[k]),
                               gpu_seconds=s, first=span[k][0], last=span[k][1]) for k, s in seconds.items()),
                  key=lambda u: (u.first, u.stack, u.namespace, u.owner))

"""What the healer sees on Kubernetes: node conditions and the node health check's taints and
labels, turned into decision-table signals (the same signals as Slurm's drain reasons).

- the health check taints ``gpufleet.io/unhealthy=<check>:NoSchedule`` and labels
  ``gpufleet.io/health=fail`` + ``gpufleet.io/health-check=<check>`` (lifecycle/health/actions.py):
  the check's name maps to a signal as the Slurm hook's ``gpufleet: <check>: ...`` does (the label
  carries no Xid code: the Prometheus source adds it, heal/sources.py);
- ``gpufleet.io/replace=true`` is an operator's request (``replace_requested``);
- ``gpufleet.io/gate-failed=<operation>`` marks a newcomer that failed its gate (``gate_failed``;
  the journal's operations give the length of the run, heal/gate_failures.py);
- the ``Ready`` condition not ``True`` is ``not_ready`` since its ``lastTransitionTime``;
- ``gpufleet.io/spare=true`` marks a hot spare (no signal: a replacement in its group swaps it in);
- a node still held by the gate's taint (``gpufleet.io/unverified``) is the gate's business: its
  health taint is no signal, its request and gate-failed labels and its NotReady still are.

Only nodes of the inventory's node groups are observed (matched by ``spec.providerID``): the
cluster's own system nodes are not the healer's to replace.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gpufleet.automation.heal.decide import NodeObservation
from gpufleet.automation.heal.observe import HOOK_PREFIX, reason_signals
from gpufleet.automation.orchestrators.base import SPARE_TAINT, UNVERIFIED
from gpufleet.lifecycle.health.actions import CHECK_LABEL, HEALTH_LABEL, TAINT_KEY

REPLACE_LABEL = "gpufleet.io/replace"
"""``gpufleet.io/replace=true`` on a node asks the healer to replace it."""
GATE_FAILED_LABEL = "gpufleet.io/gate-failed"
"""On a newcomer that failed its gate (still held by the gate's taint), the id of the operation that
launched it: ``gate_failed``, replaced by the next pass (heal/kube_execute.py, heal/gate_failures.py)."""


def instance_of(node: Any) -> str:
    """The EC2 instance id of a node (``spec.providerID`` is ``aws:///<az>/<instance id>``)."""
    provider = (node.spec.provider_id or "") if node.spec else ""
    tail = provider.rsplit("/", 1)[-1]
    return tail if provider.startswith("aws://") and tail.startswith("i-") else ""


def failed_check(node: Any) -> str:
    """The check the node health check failed the node on, or ""."""
    for taint in (node.spec.taints or []) if node.spec else []:
        if taint.key == TAINT_KEY:
            return taint.value or "unknown"
    labels = node.metadata.labels or {}
    return (labels.get(CHECK_LABEL) or "unknown") if labels.get(HEALTH_LABEL) == "fail" else ""


def spare(node: Any) -> bool:
    """Held as its pool's hot spare (automation/heal/kube_spares.py)."""
    return any(t.key == SPARE_TAINT for t in ((node.spec.taints or []) if node.spec else []))


def held(node: Any) -> bool:
    return any(t.key == UNVERIFIED for t in ((node.spec.taints or []) if node.spec else []))


def node_signals(node: Any) -> tuple[str, ...]:
    """Decision-table signals of one node (the request first, as Slurm's reason carries it alone)."""
    out: list[str] = []
    if (node.metadata.labels or {}).get(REPLACE_LABEL) == "true":
        out.append("replace_requested")
    if (node.metadata.labels or {}).get(GATE_FAILED_LABEL):
        out.append("gate_failed")
    check = failed_check(node)
    if check and not held(node):
        out.extend(reason_signals(f"{HOOK_PREFIX} {check}: "))
    return tuple(dict.fromkeys(out))


def not_ready_for(node: Any, now: float) -> float | None:
    """Seconds since the node's Ready condition left True; None while it is Ready."""
    conditions = (node.status.conditions or []) if node.status else []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "True":
        return None
    since = getattr(ready, "last_transition_time", None) if ready is not None else None
    if not isinstance(since, datetime):
        return 0.0
    return max(0.0, now - since.timestamp())


def kube_observations(nodes: list[Any], owner: Mapping[str, tuple[str, str]],
                      now: float) -> list[NodeObservation]:
    """``owner``: instance id -> (``stack/group``, pool) of the inventory's node groups."""
    out = []
    for node in nodes:
        iid = instance_of(node)
        if iid not in owner:
            continue
        group, pool = owner[iid]
        out.append(NodeObservation(node=node.metadata.name, instance_id=iid, group=group, pool=pool,
                                   signals=node_signals(node), not_ready_s=not_ready_for(node, now),
                                   spare=spare(node)))
    return out

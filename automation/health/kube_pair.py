"""The peer all-reduce on EKS: an Indexed Job of two pods, one on the new node, one on its peer.

The Job (``completionMode: Indexed``, completions = parallelism = 2) pins its pods to the two
nodes by node affinity on their names and keeps them apart by pod anti-affinity on the hostname
(one pod per node); it tolerates the hold and GPU taints and asks for every GPU and EFA interface
of the instance type, as the single-node probe does (``kube_probe.py``). Each pod's hostname is
``<job>-<index>`` and its subdomain the headless Service of the same name, so each pod reaches
the other as ``<job>-<index>.<service>``.

Which index lands on which node is the scheduler's choice, but the node health code grades the
all-reduce on node rank 0, which must be the newcomer: each pod takes rank 0 when its node
(``spec.nodeName``, through the downward API) is the new node, and the rendezvous is the pod of
rank 0 (its own index on the new node, the other index, ``1 - i``, on the peer). The pod resolves
that name before it starts (headless records exist once the pod has an address; bounded wait)
and hands torchrun the address. On an EFA instance the pods get the EFA environment the workload
pods get (NCCL over aws-ofi-nccl, which the image must carry, with ``/bin/sh`` and ``getent``).
The newcomer's pod's log is its report.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from gpufleet.automation.health.peer import PeerCandidate
from gpufleet.automation.health.probe import pair_argv, probe_failure, report_from_output
from gpufleet.automation.jobs.spec import EFA_ENV
from gpufleet.automation.orchestrators.base import UNVERIFIED
from gpufleet.infra.eks_scheduling import NODE_GROUP_LABEL, POOL_ROLE_LABEL
from gpufleet.lifecycle.health.actions import TAINT_KEY as UNHEALTHY_TAINT
from gpufleet.lifecycle.health.results import NodeReport, Tier
from gpufleet.lifecycle.instance_types import InstanceFacts

NODEGROUP_LABEL = NODE_GROUP_LABEL
"""The node group label the stack's node groups set (the same group: the same placement)."""
PAIR_LABEL = "gpufleet.io/health-pair"
"""Pod label of a pair's two pods: the Service's selector and the anti-affinity's."""
INDEX_ENV = "JOB_COMPLETION_INDEX"
"""Set by the Job controller in each pod of an Indexed Job."""
RESOLVE_TRIES = 90
RANK_SCRIPT = (
    'new=$1 job=$2 svc=$3; shift 3; i=${' + INDEX_ENV + ':?not an Indexed Job pod}; '
    'r=1; m=$((1 - i)); if [ "$GPUFLEET_NODE_NAME" = "$new" ]; then r=0; m=$i; fi; '
    'host="$job-$m.$svc"; n=0; '
    'until addr=$(getent hosts "$host") && [ -n "$addr" ]; do '
    f'n=$((n + 1)); if [ "$n" -ge {RESOLVE_TRIES} ]; then echo "$host did not resolve" >&2; exit 3; fi; sleep 2; done; '
    'exec "$@" --node "$GPUFLEET_NODE_NAME" --node-rank "$r" --master-addr "${addr%%[[:space:]]*}"'
)
"""Runs in each pod (POSIX sh): rank 0 on the new node, the rendezvous at rank 0's pod."""
DONE_PHASES = ("Succeeded", "Failed")


def pair_name(instance_id: str) -> str:
    """Job and Service name (DNS-1035, the pods' hostnames ``<name>-<index>`` within 63)."""
    return f"gpufleet-pair-{re.sub(r'[^a-z0-9-]', '-', instance_id.lower())}-{uuid.uuid4().hex[:6]}"


def pair_service(*, name: str, namespace: str, port: int) -> dict[str, Any]:
    """The headless Service that gives each pod of the pair its DNS name (before it is ready)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "gpufleet-health-pair"}},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {PAIR_LABEL: name},
                 "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def pair_job(*, name: str, new_node: str, peer_node: str, instance_id: str, instance: InstanceFacts, image: str,
             port: int, timeout_s: int, namespace: str, labels: Mapping[str, str], python: str = "python3",
             node_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Indexed Job of the pair (a plain dict, as the API takes it)."""
    from gpufleet.automation.health.kube_probe import EFA_RESOURCE, GPU_RESOURCE

    resources: dict[str, str] = {}
    if instance.gpus:
        resources[GPU_RESOURCE] = str(instance.gpus)
    if instance.efa_interfaces:
        resources[EFA_RESOURCE] = str(instance.efa_interfaces)
    pod_labels = {**labels, PAIR_LABEL: name}
    values = {"GPUFLEET_INSTANCE_TYPE": instance.name, **(EFA_ENV if instance.efa_interfaces else {}), **(node_env or {})}
    env = [{"name": "GPUFLEET_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           *({"name": k, "value": v} for k, v in values.items())]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {**labels, "gpufleet.io/instance-id": instance_id}},
        "spec": {
            "completionMode": "Indexed", "completions": 2, "parallelism": 2,
            "backoffLimit": 0, "activeDeadlineSeconds": timeout_s, "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": name,
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In",
                                              "values": [new_node, peer_node]}]}]}},
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {PAIR_LABEL: name}},
                             "topologyKey": "kubernetes.io/hostname"}]},
                    },
                    "tolerations": [
                        {"key": UNVERIFIED, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "health",
                        "image": image,
                        "command": ["/bin/sh", "-c", RANK_SCRIPT, "gpufleet-pair", new_node, name, name,
                                    python, *pair_argv(port)],
                        "env": env,
                        "ports": [{"name": "rendezvous", "containerPort": port, "protocol": "TCP"}],
                        "resources": {"requests": resources, "limits": resources},
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                },
            },
        },
    }


def candidates(nodes: Sequence[Any], pods: Sequence[Any]) -> list[PeerCandidate]:
    """Every node with an instance id as a peer candidate: pool = its ``gpufleet.io/pool`` label,
    group = its managed node group, admitted = no hold taint, healthy = Ready, schedulable and no
    ``gpufleet.io/unhealthy`` taint, idle = no running pod but DaemonSets' and mirror pods."""
    busy: set[str] = set()
    for pod in pods:
        meta = pod.metadata
        if (pod.status and pod.status.phase in DONE_PHASES) or not (pod.spec and pod.spec.node_name) or \
                "kubernetes.io/config.mirror" in (meta.annotations or {}) or \
                any(ref.kind == "DaemonSet" for ref in (meta.owner_references or [])):
            continue
        busy.add(pod.spec.node_name)
    out = []
    for node in nodes:
        iid = ((node.spec.provider_id or "") if node.spec else "").rsplit("/", 1)[-1]
        if not iid.startswith("i-"):
            continue
        labels = node.metadata.labels or {}
        taints = {t.key for t in (node.spec.taints or [])}
        ready = any(c.type == "Ready" and c.status == "True" for c in ((node.status and node.status.conditions) or []))
        out.append(PeerCandidate(name=iid, pool=labels.get(POOL_ROLE_LABEL, ""), group=labels.get(NODEGROUP_LABEL, ""),
                                 admitted=UNVERIFIED not in taints,
                                 healthy=ready and not node.spec.unschedulable and UNHEALTHY_TAINT not in taints,
                                 idle=node.metadata.name not in busy, aliases=frozenset({node.metadata.name})))
    return out


def wait_pair(probe: Any, node: str, name: str, new_node: str) -> NodeReport:
    """The newcomer's report once its pod is done (a FAIL ``probe`` result when a pod failed
    without one, when a pod stays unscheduled ``probe.immediate_s`` seconds, or at the deadline)."""
    from gpufleet.automation.kube_client import call

    tiers = (Tier.DEEP,)
    deadline = time.monotonic() + probe.timeout_s + 60
    unplaced_since: float | None = None
    while True:
        pods = call("list pods", probe.core.list_namespaced_pod, probe.namespace,
                    label_selector=f"{PAIR_LABEL}={name}").items
        mine = next((p for p in pods if p.spec and p.spec.node_name == new_node), None)
        failed = [p for p in pods if p.status and p.status.phase == "Failed" and p is not mine]
        if mine is not None and mine.status and mine.status.phase in DONE_PHASES:
            log = call("read pod log", probe.core.read_namespaced_pod_log, mine.metadata.name, probe.namespace,
                       container="health")
            return report_from_output(node, tiers, log, f"Job {name} pod {mine.metadata.name} {mine.status.phase}")
        if failed:
            log = call("read pod log", probe.core.read_namespaced_pod_log, failed[0].metadata.name, probe.namespace,
                       container="health", tail_lines=5)
            last = (log.strip().splitlines() or ["(no output)"])[-1][:200]
            return probe_failure(node, tiers, f"Job {name}: the peer's pod {failed[0].metadata.name} failed: {last}")
        unplaced = [p.metadata.name for p in pods if not (p.spec and p.spec.node_name)]
        unplaced_since = (unplaced_since or time.monotonic()) if unplaced else None
        if unplaced_since is not None and time.monotonic() - unplaced_since > probe.immediate_s:
            # As srun --immediate on Slurm: a busy peer fails the newcomer now, which stays held.
            return probe_failure(node, tiers, f"Job {name}: {', '.join(unplaced)} not scheduled in "
                                 f"{probe.immediate_s} s (the peer busy, or its GPUs in use?)")
        if time.monotonic() > deadline:
            phases = sorted(f"{p.metadata.name} {p.status.phase if p.status else '?'}" for p in pods)
            return probe_failure(node, tiers, f"Job {name}: at the deadline: {', '.join(phases) or 'no pods'}")
        probe.sleep(probe.poll_s)

"""A heal replacement on EKS: the Slurm executor's journal, lease, fencing and Auto Scaling steps,
with the node side through the Kubernetes API (automation/orchestrators/kubernetes.py).

    LOCKED -> CHECKPOINTING   cordon the node (no new pods land on it)
    CHECKPOINTING -> DRAINED  evict its pods through the Eviction API: the eviction's SIGTERM is the
                              job's checkpoint signal (its grace period the time to write it), and
                              PodDisruptionBudgets are honoured (429: retried until the drain timeout);
                              on a node that is not Ready, pods marked deleted count as gone (no
                              kubelet is left to confirm them)
    DRAINED -> ... -> HEALTHY the terminate (desired capacity kept), the newcomer InService, the gate:
                              as on Slurm (execute.py)
    ACQUIRED -> HEALTHY       wait for the newcomer's node to register (held by the gate's taint
                              ``gpufleet.io/unverified``, as the kubelet registers it), then the gate
    HEALTHY -> JOINED         lift the gate's taint
    gate failed               the newcomer keeps the gate's taint and is labelled
                              ``gpufleet.io/gate-failed=<operation>``: the next pass replaces it through
                              the same path and budget, and reports a run of them (heal/gate_failures.py)
    swap                      with a held spare of the group (heal/kube_spares.py): the spare's taint
                              lifted as the node is cordoned, before the eviction; at HEALTHY the
                              gated newcomer is held as the new spare instead of admitted
    spare                     a pool short of its hot spares: launched and gated as on Slurm, then
                              held as a spare

Operations carry ``orchestrator: eks`` in their body; a Slurm healer leaves them alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from gpufleet.automation.heal.execute import SPARE, HealExecutor, Limits
from gpufleet.automation.heal.kube_observe import GATE_FAILED_LABEL
from gpufleet.automation.heal.kube_spares import admit_spare, hold_as_spare
from gpufleet.automation.health.probe import NodeProbe
from gpufleet.automation.kube_client import call
from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator
from gpufleet.automation.rebalance.journal import Operation
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import OperationFailed
from gpufleet.lifecycle.health.results import Tier

ORCHESTRATOR = "eks"


class KubeHealExecutor(HealExecutor):
    """Drives EKS heal replacements (reboots are not made on EKS: heal/kube_service.py holds them)."""

    def __init__(self, journal: Any, kube: Callable[[str], KubernetesOrchestrator], asg: Callable[[str], Any],
                 probes: Callable[[str], NodeProbe], tiers: Sequence[Tier], limits: Limits,
                 progress: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                 ec2: Callable[[str], Any] | None = None) -> None:
        super().__init__(journal, None, asg, probes, tiers, limits, progress, sleep, ec2)  # type: ignore[arg-type]
        self.kube = kube
        """stack -> the adapter of that stack's cluster."""

    def _step(self, op: Operation) -> Operation:
        b = op.body
        if b["action"] not in ("replace", SPARE):
            raise OperationFailed(f"{op.op_id}: {b['action']} of {b['node']}: the EKS healer only replaces",
                                  "the operation was journaled by another healer; end it by hand")
        kube = self.kube(b["stack"])
        iid = b["instance_id"]
        if b["action"] == SPARE and op.state is not MoveState.HEALTHY:
            return super()._step(op)  # no node to drain; the launch and the gate as on Slurm
        if op.state is MoveState.HEALTHY and (b["action"] == SPARE or b.get("swap_with")):
            # The newcomer takes the spare's place: held, not admitted (once registered).
            fresh = list(b["replaced_by"])
            held = self._wait(lambda: self._fenced(lambda: hold_as_spare(kube, fresh)),
                              self.limits.replace_timeout_s, f"the node of {', '.join(fresh)} registered")
            self.progress(f"{', '.join(held)}: held as the new spare")
            return self.journal.transition(op, MoveState.JOINED,
                                           {"admitted": [b["swap_with"]] if b.get("swap_with") else [], "spare": held})
        if op.state is MoveState.LOCKED:
            self.journal.record(op, "intent", "cordon", {"node": b["node"]})
            self._fenced(lambda: kube.request_checkpoint([iid], b["reason"]))
            self.progress(f"{b['node']}: cordoned")
            if b.get("swap_with"):
                # Before the eviction, so the evicted pods land on the spare instead of waiting for a boot.
                self.journal.record(op, "intent", "admit_spare", {"node": b["swap_with"]})
                self._fenced(lambda: admit_spare(kube, b["swap_with"]))
                self.progress(f"{b['swap_with']}: spare admitted in place of {b['node']}")
            return self.journal.transition(op, MoveState.CHECKPOINTING)
        if op.state is MoveState.CHECKPOINTING:
            self.journal.record(op, "intent", "evict", {"node": b["node"]})

            def evicted() -> bool:
                if iid in kube.drained([iid]):
                    return True
                self._fenced(lambda: kube.evict([iid]))  # a budget's 429 leaves a pod for the next round
                return iid in kube.drained([iid]) or lost(kube, b["node"])

            self._wait(evicted, self.limits.drain_timeout_s, f"pods evicted from {b['node']}")
            self.progress(f"{b['node']}: drained (pods evicted)")
            return self.journal.transition(op, MoveState.DRAINED, body={**b, "before": self._in_service(b)})
        if op.state is MoveState.HEALTHY:
            fresh = list(b["replaced_by"])
            self._registered(kube, fresh)
            self._fenced(lambda: kube.admit(fresh))
            self.progress(f"{', '.join(fresh)}: admitted (gpufleet.io/unverified lifted)")
            return self.journal.transition(op, MoveState.JOINED, {"admitted": fresh})
        return super()._step(op)

    def _newcomer_nodes(self, b: dict[str, Any], ids: set[str]) -> list[str]:
        return sorted(n.metadata.name for n in self.kube(b["stack"]).nodes_of(ids).values())

    def _hold_failed(self, b: dict[str, Any], op_id: str, nodes: list[str], why: str) -> None:
        # The newcomer keeps the gate's hold (gpufleet.io/unverified: it never serves); the label,
        # naming the operation that launched it, is the next pass's signal to replace it.
        kube = self.kube(b["stack"])
        for name in nodes:
            call("label node", kube.core.patch_node, name, {"metadata": {"labels": {GATE_FAILED_LABEL: op_id}}})

    def _await_join(self, b: dict[str, Any]) -> None:
        # The gate reaches the newcomer through its node (the orchestrator probe runs a pod there).
        self._registered(self.kube(b["stack"]), list(b["replaced_by"]))

    def _registered(self, kube: KubernetesOrchestrator, fresh: list[str]) -> None:
        self._wait(lambda: all(w.known for w in kube.work(fresh)), self.limits.replace_timeout_s,
                   f"the node of {', '.join(fresh)} registered")


def lost(kube: KubernetesOrchestrator, node: str) -> bool:
    """The node is not Ready and each pod left on it is already being deleted: its kubelet will never
    confirm them (terminating the instance ends them; the pod garbage collector then removes them),
    so waiting on them would keep a dead node forever."""
    found = call("read node", kube.core.read_node, node)
    conditions = (found.status.conditions or []) if found.status else []
    if any(c.type == "Ready" and c.status == "True" for c in conditions):
        return False
    return all(p.metadata.deletion_timestamp is not None for p in kube.pods_on(node))

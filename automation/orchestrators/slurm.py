"""The rebalancer's adapter for Slurm, over the one Slurm client (automation/slurm_client.py).

A node belongs to an EC2 instance when the instance id appears in its NodeName, NodeHostname,
Comment or Extra field (bootstrap sets one of them; dynamic nodes: ``slurmd -Z --conf
"Extra=instance-id=i-..."``). New GPU nodes register held by a reservation of their own
(lifecycle/slurm/hold.py); ``admit`` deletes it. Jobs publish their newest checkpoint, when they do, as
``checkpoint=<unix time>`` in their comment (``scontrol update JobId=... Comment=...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpufleet.automation.orchestrators.base import SPARE_REASON, UNVERIFIED_REASON, NodeWork
from gpufleet.automation.slurm_client import QueuedJob, SlurmClient, SlurmNode
from gpufleet.lifecycle.slurm.hold import hold_reservation

CHECKPOINT = re.compile(r"checkpoint=(\d+(?:\.\d+)?)")
UNAVAILABLE = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "POWER", "FUTURE", "MAINT", "REBOOT", "INVAL")
WORKING = ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
"""Job states that hold a node: a drain waits for them."""


class SlurmOrchestrator:
    kind = "slurm"

    def __init__(self, slurm: SlurmClient | None = None) -> None:
        self.slurm = slurm or SlurmClient()

    def _nodes(self, instance_ids: Iterable[str]) -> dict[str, SlurmNode]:
        wanted = set(instance_ids)
        found: dict[str, SlurmNode] = {}
        for node in self.slurm.nodes():
            for iid in node.instance_ids & wanted:
                found[iid] = node
        return found

    def _jobs_on(self, node: str) -> list[QueuedJob]:
        return self.slurm.queue(node=node, states=WORKING)

    def work(self, instance_ids: Iterable[str]) -> list[NodeWork]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        out = []
        for iid in ids:
            node = nodes.get(iid)
            if node is None:
                out.append(NodeWork(instance_id=iid, known=False, detail="no Slurm node"))
                continue
            jobs = self._jobs_on(node.name)
            stamps = [float(m.group(1)) for job in jobs if (m := CHECKPOINT.search(job.comment))]
            out.append(NodeWork(instance_id=iid, busy=bool(jobs),
                                last_checkpoint=min(stamps) if stamps and len(stamps) == len(jobs) else None,
                                detail=f"{node.name} {node.state} jobs={','.join(j.job_id for j in jobs) or '-'}",
                                spare="DRAIN" in node.state.upper() and node.reason.startswith(SPARE_REASON)))
        return out

    def request_checkpoint(self, instance_ids: Iterable[str], reason: str) -> None:
        names = sorted({n.name for n in self._nodes(instance_ids).values()})
        if not names:
            return
        self.slurm.update_nodes(names, State="DRAIN", Reason=reason)
        for name in names:
            for job in self._jobs_on(name):
                self.slurm.signal(job.job_id, "USR1")  # the runtime checkpoints on it

    def jobs(self, instance_ids: Iterable[str]) -> list[QueuedJob]:
        return [job for name in sorted({n.name for n in self._nodes(instance_ids).values()})
                for job in self._jobs_on(name)]

    def evict(self, instance_ids: Iterable[str]) -> None:
        for node in {n.name for n in self._nodes(instance_ids).values()}:
            for job in self._jobs_on(node):
                self.slurm.requeue(job.job_id)

    def drained(self, instance_ids: Iterable[str]) -> set[str]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        return {iid for iid in ids if iid not in nodes or not self._jobs_on(nodes[iid].name)}

    def undrain(self, instance_ids: Iterable[str]) -> None:
        names = sorted({n.name for n in self._nodes(instance_ids).values()})
        if names:
            self.slurm.update_nodes(names, check=False, State="RESUME")

    def admit(self, instance_ids: Iterable[str]) -> None:
        """Lift the hold: delete the node's ``gpufleet-unverified-<node>`` reservation (the GPU
        nodes' bootstrap, lifecycle/slurm/hold-node.sh), and resume a node drained with the
        ``gpufleet unverified`` reason (nodes held by hand)."""
        nodes = self._nodes(instance_ids).values()
        existing = {r["ReservationName"] for r in self.slurm.reservations()}
        for name in sorted({hold_reservation(n.name) for n in nodes} & existing):
            self.slurm.delete_reservation(name)
        drained = sorted({n.name for n in nodes if "DRAIN" in n.state.upper() and n.reason.startswith(UNVERIFIED_REASON)})
        if drained:
            self.slurm.update_nodes(drained, State="RESUME")

    def ready(self, instance_ids: Iterable[str]) -> set[str]:
        """Registered, up, and not held (a held node is IDLE to ``scontrol show node``)."""
        nodes = self._nodes(instance_ids)
        if not nodes:
            return set()
        held = {r["ReservationName"] for r in self.slurm.reservations()}
        return {iid for iid, node in nodes.items() if not any(flag in node.state.upper() for flag in UNAVAILABLE)
                and hold_reservation(node.name) not in held}

"""The orchestrator adapter: what the rebalancer needs from a workload manager.

Nodes are named by EC2 instance id throughout; each adapter maps ids to its own node names.
Pure: no client library imported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gpufleet.infra.eks_scheduling import HOLD_TAINT

if TYPE_CHECKING:
    from gpufleet.automation.slurm_client import QueuedJob

UNVERIFIED = HOLD_TAINT.key
"""Kubernetes taint (NoSchedule) new nodes register with until the health gate passes."""
UNVERIFIED_REASON = "gpufleet unverified"
"""Slurm drain reason (prefix) of new nodes held until admitted (the node bootstrap sets it)."""
SPARE_REASON = "gpufleet spare"
"""Slurm drain reason (prefix) of a gated node held as its pool's hot spare (the healer sets it)."""
SPARE_TAINT = "gpufleet.io/spare"
"""Kubernetes taint (``true:NoSchedule``, with the node cordoned) of a gated node held as its
pool's hot spare (the healer sets it, automation/heal/kube_spares.py)."""


@dataclass(frozen=True, kw_only=True)
class NodeWork:
    """What a node is doing, as far as the workload manager knows."""

    instance_id: str
    known: bool = True
    """False when the manager has no node for this instance (not joined, or gone)."""
    busy: bool = False
    """Runs work that a drain would interrupt."""
    last_checkpoint: float | None = None
    """Unix time of the newest checkpoint of the work on the node, when the work publishes it."""
    detail: str = ""
    """Manager-specific state (Slurm state, pod names), for the plan printout."""
    spare: bool = False
    """Held as its pool's hot spare (``SPARE_REASON``, ``SPARE_TAINT``): no consumer's, so a move never takes it."""


class Orchestrator(Protocol):
    """Drain and join nodes. Every method is idempotent: calling it again is harmless."""

    kind: str
    """slurm | eks | none."""

    def work(self, instance_ids: Iterable[str]) -> list[NodeWork]:
        """Work on each node, in the order given."""
        ...

    def request_checkpoint(self, instance_ids: Iterable[str], reason: str) -> None:
        """Stop new work landing on the nodes and ask the running work to checkpoint."""
        ...

    def jobs(self, instance_ids: Iterable[str]) -> list[QueuedJob]:
        """The jobs running on the nodes, with the comment they publish their checkpoint time in
        (Slurm); empty where the manager has no such jobs (Kubernetes: the eviction is the signal)."""
        ...

    def evict(self, instance_ids: Iterable[str]) -> None:
        """Move the remaining work off the nodes (requeue, evict); may leave some for a later call."""
        ...

    def drained(self, instance_ids: Iterable[str]) -> set[str]:
        """The nodes that run no work any more."""
        ...

    def undrain(self, instance_ids: Iterable[str]) -> None:
        """Give the nodes back to the scheduler (rollback)."""
        ...

    def admit(self, instance_ids: Iterable[str]) -> None:
        """Let new nodes that passed the health gate take work: lift the hold they registered with
        (Kubernetes taint ``gpufleet.io/unverified``, Slurm drain reason ``gpufleet unverified...``).
        Nodes not registered yet are skipped (the caller polls)."""
        ...

    def ready(self, instance_ids: Iterable[str]) -> set[str]:
        """The nodes that have joined and accept work."""
        ...


class NoOrchestrator:
    """No workload manager is reachable (``orchestrator: none`` in the inventory).

    Honest about what that means: nothing can be asked, so every node counts as idle with no
    checkpoint, draining is a no-op, and a node counts as joined as soon as it is InService and
    healthy. Use it only where nothing runs on the nodes that a drain should protect (the sandbox,
    which emulates AWS alone, or a group whose work is stateless).
    """

    kind = "none"

    def work(self, instance_ids: Iterable[str]) -> list[NodeWork]:
        return [NodeWork(instance_id=i, busy=False, detail="no orchestrator") for i in instance_ids]

    def request_checkpoint(self, instance_ids: Iterable[str], reason: str) -> None:
        return None

    def jobs(self, instance_ids: Iterable[str]) -> list[QueuedJob]:
        return []

    def evict(self, instance_ids: Iterable[str]) -> None:
        return None

    def drained(self, instance_ids: Iterable[str]) -> set[str]:
        return set(instance_ids)

    def undrain(self, instance_ids: Iterable[str]) -> None:
        return None

    def admit(self, instance_ids: Iterable[str]) -> None:
        return None

    def ready(self, instance_ids: Iterable[str]) -> set[str]:
        return set(instance_ids)

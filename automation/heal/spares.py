"""Hot spares on Slurm: nodes launched, gated and held, so a replacement is a swap instead of a boot.

A spare is a node of the group that passed its gate and is held with the drain reason
``gpufleet spare``: Slurm schedules nothing on it and the healer reads it as a spare (it carries
no fault signal). A swap admits the spare (RESUME: the requeued job lands on it at once), then
replaces the faulty node as a plain replacement does; the newcomer, once its gate passes, is held
as the new spare instead of admitted, so the pool keeps its spares. Only the healer, under the
pool's lease, moves a node in or out of this state.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.automation.orchestrators.base import SPARE_REASON
from gpufleet.automation.slurm_client import SlurmClient, SlurmNode
from gpufleet.lifecycle.slurm.hold import hold_reservation

__all__ = ["SPARE_REASON", "admit_spare", "hold_as_spare", "is_spare"]


def is_spare(node: SlurmNode) -> bool:
    """Drained by the healer as a spare (Slurm appends ``[user@time]`` to a reason)."""
    return "DRAIN" in node.state.upper() and node.reason.startswith(SPARE_REASON)


def admit_spare(slurm: SlurmClient, node: str) -> None:
    """Let the spare take work now (idempotent: a node already serving stays as it is)."""
    slurm.update_nodes([node], check=False, State="RESUME")


def hold_as_spare(slurm: SlurmClient, instance_ids: Iterable[str]) -> list[str]:
    """Hold the gated newcomers as spares: drained with ``gpufleet spare``, their registration
    hold lifted (one hold, the one the healer reads). Returns the Slurm nodes held; a newcomer not
    registered yet is skipped (the caller polls)."""
    wanted = set(instance_ids)
    nodes = sorted(n.name for n in slurm.nodes() if n.instance_ids & wanted)
    if not nodes:
        return []
    slurm.update_nodes(nodes, State="DRAIN", Reason=SPARE_REASON)
    existing = {r["ReservationName"] for r in slurm.reservations()}
    for name in sorted({hold_reservation(n) for n in nodes} & existing):
        slurm.delete_reservation(name)
    return nodes

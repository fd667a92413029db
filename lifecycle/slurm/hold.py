"""How a new Slurm node is held until the health gate admits it (``hold-node.sh`` does it on the node).

The node's bootstrap creates the node record and a maintenance reservation named
``gpufleet-unverified-<node>`` on it (users: root) before slurmd first registers, so no job of a
partition starts there. The gate runs its checks with ``srun --reservation=<that name>`` and
admits the node by deleting the reservation (``SlurmOrchestrator.admit``).
"""

from __future__ import annotations

HOLD_PREFIX = "gpufleet-unverified-"
"""Reservation name prefix; the rest is the Slurm node name."""
HOLD_SCRIPT = "slurm/hold-node.sh"
"""The script, relative to the bundle's root (``gpufleet/lifecycle``)."""


def hold_reservation(node: str) -> str:
    """The reservation that holds ``node``."""
    return f"{HOLD_PREFIX}{node}"

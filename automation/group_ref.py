"""A node group as the JSON of every command names it (docs/json.md, "Node group").

plan and status print node groups whole (with keys of their own); a move (its source and its
destination) and a node's health name the group with these keys, the same as status's. Not the
orchestrator: status prints the program's, while a move journals the adapter it drove (in the
sandbox a stand-in), so the same key would mean two things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class NodeGroupRef:
    """The keys a node group has in status, rebalance, rebalance show and health."""

    stack: str
    """The consumer stack (one per account)."""
    name: str
    """The node group's name in its stack file."""
    pool: str
    """The platform pool it draws from."""
    instance_type: str
    asg_name: str
    """Its Auto Scaling group's real name."""

    @classmethod
    def of_plan(cls, plan: dict[str, Any], side: str) -> NodeGroupRef:
        """``side`` (``source`` or ``dest``) of a journaled move plan (``MovePlan.to_dict``)."""
        return cls(stack=str(plan.get(f"{side}_stack", "?")), name=str(plan.get(f"{side}_group", "?")),
                   pool=str(plan.get("pool", "?")), instance_type=str(plan.get("instance_type", "?")),
                   asg_name=str(plan.get(f"{side}_asg", "?")))

    def __str__(self) -> str:
        if self.stack == "":  # a move to or from ``released``: the reservation itself (rebalance/reservation.py)
            return f"pool {self.pool}'s reservation"
        return f"{self.stack}/{self.name}"

"""What ``gpufleet plan`` flags besides bad input: combinations known to fail at launch.

Pure: no pulumi import. The guardrails report in the same ``Finding`` shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.infra import catalog
from gpufleet.infra.model import PoolKind, Role, StackSpec


@dataclass(frozen=True, kw_only=True)
class Finding:
    """Something the plan flags; the guardrails use the same shape."""

    rule: str
    """Rule id, e.g. ``capacity.placement-group-with-reservation``."""
    severity: str
    """``error`` (mandatory) or ``warning``."""
    stack: str
    """Stack the finding is about."""
    resource: str
    """Resource (or node group) the finding is about."""
    message: str
    """What is wrong and what to do."""

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "stack": self.stack,
                "resource": self.resource, "message": self.message}


def placement_findings(specs: Sequence[StackSpec]) -> list[Finding]:
    """Combinations known to fail at launch, before anything is applied.

    A cluster placement group asks EC2 for instances close together *now*; a targeted reservation
    or capacity block holds instances that were placed when it was made. Together they routinely
    fail with InsufficientInstanceCapacity, so the plan flags them.
    """
    pools = {p.name: p for spec in specs if spec.role is Role.PLATFORM for p in spec.pools}
    findings = []
    for spec in specs:
        for group in spec.node_groups:
            pool = pools.get(group.pool)
            if group.enable_placement_group and pool is not None and pool.kind is not PoolKind.ON_DEMAND:
                findings.append(Finding(
                    rule="capacity.placement-group-with-reservation", severity="error", stack=spec.name,
                    resource=group.name,
                    message=(f"node group {group.name} puts a cluster placement group on {pool.kind.value} pool "
                             f"{pool.name}: EC2 rejects this with InsufficientInstanceCapacity. Set "
                             "enablePlacementGroup: false (the reservation already fixes placement)."),
                ))
            info = catalog.lookup(group.instance_type)
            if group.enable_placement_group and not info.has_efa:
                findings.append(Finding(
                    rule="capacity.placement-group-without-efa", severity="warning", stack=spec.name,
                    resource=group.name,
                    message=f"node group {group.name} uses a placement group for {group.instance_type}, which has no EFA.",
                ))
    return findings

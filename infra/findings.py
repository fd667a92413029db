"""What ``gpufleet plan`` flags besides bad input: combinations known to fail at launch.

Pure: no pulumi import. The guardrails report in the same ``Finding`` shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.infra import catalog
from gpufleet.infra.model import PoolKind, Role, StackSpec

SCARCE_FAMILIES = ("p5", "p5e", "p5en", "p6", "p6e")
"""Instance families whose on-demand capacity is rarely there to reserve: a new ODCR of them
usually fails with InsufficientInstanceCapacity, or waits."""


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


def pool_findings(specs: Sequence[StackSpec]) -> list[Finding]:
    """Pools the platform would reserve anew although the capacity is scarce."""
    findings = []
    for spec in specs:
        if spec.role is not Role.PLATFORM:
            continue
        for pool in spec.pools:
            family = pool.instance_type.split(".", 1)[0]
            if pool.kind is PoolKind.ODCR and pool.reservation_id is None and (
                    family in SCARCE_FAMILIES or family.startswith("p6-")):
                findings.append(Finding(
                    rule="capacity.scarce-new-odcr", severity="warning", stack=spec.name, resource=pool.name,
                    message=(f"pool {pool.name} creates a new on-demand capacity reservation of {pool.count} x "
                             f"{pool.instance_type} in {pool.az_id}: {family} capacity is scarce, and the "
                             "reservation is likely to fail (InsufficientInstanceCapacity) or to be partly filled. "
                             "Adopt an existing reservation (reservationId: cr-...) or buy a Capacity Block "
                             "(kind: capacity-block with its reservationId, startTime and endTime)."),
                ))
    return findings

"""The platform account's side of lending: bring a pool's interruptible allocation to the slots the
decision lends (``PoolTarget.lent``), one idempotent step a pass, through boto3 (``ec2``: the platform account's client, ``AwsAccess.client("platform", "ec2")``).

EC2's actions (API reference): ``CreateInterruptibleCapacityReservationAllocation`` makes an
interruptible reservation of ``InstanceCount`` available slots of an ODCR without an end date;
``UpdateInterruptibleCapacityReservationAllocation`` sets its ``TargetInstanceCount`` (more: lent
from the source's available slots; fewer: reclaimed, instances still running in them are warned and
terminated two minutes later, the allocation ``updating`` meanwhile) and its ``ZeroSizePreference``.
The allocation is kept at zero (``retain``) instead of cancelled, so the interruptible reservation
keeps its id and training's lent group (``lentReservationId``) keeps targeting it.

Checkpoint first: a reclaim is never sent while a lent node still trains. EC2, not the caller,
picks which running instances a reclaim terminates, so while any lent node (``training``) has not
checkpointed and drained, only unused lent slots are reclaimed; the step reports what it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """A source reservation's interruptible allocation as EC2 describes it."""

    source_id: str
    """The ODCR lent from."""
    lent_id: str | None
    """The interruptible reservation (None: never created, or cancelled)."""
    lent: int
    """Slots it holds now."""
    status: str
    """active | updating (a reclaim's warning runs) | canceled | none."""
    available: int
    """The source's unused slots, what a grow can take."""
    used: int = 0
    """Lent slots an instance runs in."""


@dataclass(frozen=True, kw_only=True)
class LendStep:
    """What one step did."""

    action: str
    """created | grown | reclaimed | held | waits."""
    before: int
    """Slots lent before the step."""
    after: int
    """Slots lent (or being reclaimed down to) after it."""
    lent_id: str | None
    """The interruptible reservation."""
    note: str = ""
    """What the step waits for."""


def read_allocation(ec2: Any, source_id: str) -> Allocation:
    [source] = ec2.describe_capacity_reservations(CapacityReservationIds=[source_id])["CapacityReservations"]
    allocation = source.get("InterruptibleCapacityAllocation") or {}
    status = allocation.get("Status", "none")
    lent_id = allocation.get("InterruptibleCapacityReservationId") if status != "canceled" else None
    used = 0
    if lent_id:
        [lent] = ec2.describe_capacity_reservations(CapacityReservationIds=[lent_id])["CapacityReservations"]
        used = int(lent["TotalInstanceCount"]) - int(lent["AvailableInstanceCount"])
    return Allocation(source_id=source_id, lent_id=lent_id, lent=int(allocation.get("InstanceCount", 0)) if lent_id else 0,
                      status=status, available=int(source["AvailableInstanceCount"]), used=used)


def lend_step(ec2: Any, source_id: str, want: int, *, training: int) -> LendStep:
    """One step toward ``want`` lent slots; ``training``: lent nodes not yet checkpointed and drained."""
    now = read_allocation(ec2, source_id)
    if now.status == "updating":
        return LendStep(action="waits", before=now.lent, after=now.lent, lent_id=now.lent_id,
                        note="EC2 is reclaiming: its warning runs out on the drained nodes")
    if want < now.lent:
        floor = max(want, min(now.used, now.lent)) if training else want
        if floor == now.lent:
            return LendStep(action="waits", before=now.lent, after=now.lent, lent_id=now.lent_id,
                            note=f"{training} lent node(s) still checkpointing: no reclaim before they drain")
        out = ec2.update_interruptible_capacity_reservation_allocation(
            CapacityReservationId=source_id, TargetInstanceCount=floor, ZeroSizePreference="retain")
        note = "" if floor == want else f"{training} lent node(s) still checkpointing"
        return LendStep(action="reclaimed", before=now.lent, after=int(out["TargetInstanceCount"]), lent_id=now.lent_id,
                        note=note)
    grow = min(want - now.lent, now.available)
    if want > now.lent and grow <= 0:
        return LendStep(action="waits", before=now.lent, after=now.lent, lent_id=now.lent_id,
                        note="no unused slot in the source yet (inference still leaving)")
    if grow <= 0:
        return LendStep(action="held", before=now.lent, after=now.lent, lent_id=now.lent_id)
    if now.lent_id is None:
        ec2.create_interruptible_capacity_reservation_allocation(CapacityReservationId=source_id,
                                                                 InstanceCount=grow)
        # kept at zero later instead of cancelled: the lent group's launch template names its id
        # (every update says so again, in case a pass stopped between these two calls)
        ec2.update_interruptible_capacity_reservation_allocation(
            CapacityReservationId=source_id, TargetInstanceCount=grow, ZeroSizePreference="retain")
        made = read_allocation(ec2, source_id)
        return LendStep(action="created", before=0, after=made.lent, lent_id=made.lent_id)
    out = ec2.update_interruptible_capacity_reservation_allocation(
        CapacityReservationId=source_id, TargetInstanceCount=now.lent + grow, ZeroSizePreference="retain")
    return LendStep(action="grown", before=now.lent, after=int(out["InstanceCount"]), lent_id=now.lent_id)

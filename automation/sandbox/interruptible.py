"""Interruptible Capacity Reservations, emulated (EC2's lend-and-reclaim primitive).

The owner of an active On-Demand Capacity Reservation without an end date lends unused slots of it
as an *interruptible* reservation (``CreateInterruptibleCapacityReservationAllocation``: a new
targeted reservation of that many slots, taken from the source's count; one allocation a source,
at most 1000 instances, only available slots). ``UpdateInterruptibleCapacityReservationAllocation``
grows it (from the source's available slots) or reclaims it: slots nobody runs in go back at once;
when instances run in the slots reclaimed, each gets a warning (EC2's EventBridge event "EC2
Capacity Reservation Instance Interruption Warning", here ``GET /_gpufleet/interruptions``), the
allocation is ``updating``, and ``interruption_warning_s`` later (EC2: 2 minutes) the newest of
them are terminated and the slots go back to the source (``active`` again). A reclaim to 0 without
``ZeroSizePreference=retain`` cancels the interruptible reservation.

Modelled on EC2's documentation of the two actions and InterruptibleCapacityAllocation; one
assumption not confirmed there: the lent slots leave the source's TotalInstanceCount while lent
(the documentation says only that allocations take "available instances" and a reclaim returns
them "to your source Capacity Reservation").

A mixin of ``CapacityEmulator`` (its reservations, lock and accounting); reclaims come due on the
next request the extension serves (``settle_reclaims``).
"""

from __future__ import annotations

import time
from typing import Any

MAX_INSTANCES = 1000
WARNING_S = 120.0


class InterruptibleAllocations:
    """The two EC2 actions and the reclaim clock; ``self`` is the CapacityEmulator."""

    interruption_warning_s: float = WARNING_S
    """How long a warned instance runs before EC2 terminates it (the control endpoint sets it)."""

    def _source(self, account: str, p: dict[str, Any]) -> Any:
        from gpufleet.automation.sandbox.capacity import EmulatedError

        source = self.reservation_for(account, p["CapacityReservationId"])  # type: ignore[attr-defined]
        if source.owner_id != account:
            raise EmulatedError("UnauthorizedOperation", "Only the owner of the source Capacity Reservation can "
                                "allocate or reclaim interruptible capacity")
        if source.interruptible:
            raise EmulatedError("InvalidParameterValue", f"{source.id} is itself an interruptible Capacity Reservation")
        return source

    def create_interruptible_capacity_reservation_allocation(self, account: str, region: str,
                                                             p: dict[str, Any]) -> dict[str, Any]:
        from gpufleet.automation.sandbox.capacity import CapacityReservation, EmulatedError, _hex_id

        source = self._source(account, p)
        count = int(p.get("InstanceCount", 0))
        if source.state != "active" or source.end_date_type != "unlimited":
            raise EmulatedError("InvalidParameterValue", f"{source.id} must be active with no end date "
                                f"(it is {source.state}, end date type {source.end_date_type})")
        if source.allocation is not None and source.allocation["Status"] != "canceled":
            raise EmulatedError("InvalidParameterValue", f"{source.id} already has an interruptible allocation "
                                f"({source.allocation['InterruptibleCapacityReservationId']}): modify or cancel it")
        available = self.available(source)  # type: ignore[attr-defined]
        if not 1 <= count <= min(MAX_INSTANCES, available):
            raise EmulatedError("InvalidParameterValue", f"InstanceCount {count}: expected 1 to "
                                f"{min(MAX_INSTANCES, available)} (the available instances of {source.id})")
        lent = CapacityReservation(
            id=_hex_id("cr"), owner_id=account, region=region, instance_type=source.instance_type,
            instance_platform=source.instance_platform, availability_zone=source.availability_zone,
            availability_zone_id=source.availability_zone_id, total=count, instance_match_criteria="targeted",
            tenancy=source.tenancy, interruptible=True, source_id=source.id,
        )
        self.reservations[lent.id] = lent  # type: ignore[attr-defined]
        source.total -= count
        source.allocation = {"InterruptibleCapacityReservationId": lent.id, "InstanceCount": count,
                             "TargetInstanceCount": count, "Status": "active", "InterruptionType": "adhoc",
                             "ZeroSizePreference": p.get("ZeroSizePreference", "default")}
        return {"SourceCapacityReservationId": source.id, "TargetInstanceCount": count, "Status": "active",
                "InterruptionType": "adhoc"}

    def update_interruptible_capacity_reservation_allocation(self, account: str, region: str,
                                                             p: dict[str, Any]) -> dict[str, Any]:
        from gpufleet.automation.sandbox.capacity import EmulatedError

        source = self._source(account, p)
        allocation = source.allocation
        if allocation is None or allocation["Status"] == "canceled":
            raise EmulatedError("InvalidParameterValue", f"{source.id} has no interruptible allocation")
        if allocation["Status"] == "updating":
            raise EmulatedError("IncorrectState", f"the allocation of {source.id} is being reclaimed; retry later")
        if p.get("ZeroSizePreference"):
            allocation["ZeroSizePreference"] = p["ZeroSizePreference"]
        lent = self.reservations[allocation["InterruptibleCapacityReservationId"]]  # type: ignore[attr-defined]
        target = int(p.get("TargetInstanceCount", allocation["InstanceCount"]))
        if not 0 <= target <= MAX_INSTANCES:
            raise EmulatedError("InvalidParameterValue", f"TargetInstanceCount {target}: expected 0 to {MAX_INSTANCES}")
        change = target - lent.total
        if change > 0:
            if change > self.available(source):  # type: ignore[attr-defined]
                raise EmulatedError("InvalidParameterValue", f"TargetInstanceCount {target}: {source.id} has only "
                                    f"{self.available(source)} available instances")  # type: ignore[attr-defined]
            source.total -= change
            lent.total = target
        elif change < 0:
            running = self._lent_instances(lent)
            excess = len(running) - target
            if excess > 0:
                warned = time.time()
                due = warned + self.interruption_warning_s
                for account_id, instance in running[:excess]:
                    self.interruptions.append({  # type: ignore[attr-defined]
                        "detail-type": "EC2 Capacity Reservation Instance Interruption Warning", "account": account_id,
                        "detail": {"instance-id": instance.id, "instance-action": "terminate",
                                   "instance-termination-time": due, "azId": lent.availability_zone_id},
                        "capacityReservationId": lent.id})
                allocation.update(Status="updating", WarnedAt=warned)
            else:
                self._give_back(source, lent, target)
        allocation["TargetInstanceCount"] = target
        allocation["InstanceCount"] = lent.total
        return {"InterruptibleCapacityReservationId": lent.id, "SourceCapacityReservationId": source.id,
                "InstanceCount": lent.total, "TargetInstanceCount": target, "Status": allocation["Status"],
                "InterruptionType": "adhoc"}

    def _lent_instances(self, lent: Any) -> list[tuple[str, Any]]:
        """(account, instance) running in the interruptible reservation, newest first."""
        from moto.ec2.models import ec2_backends

        from gpufleet.automation.sandbox.capacity import GPUFLEET_MARK, LIVE_STATES

        found = []
        for account in list(ec2_backends.keys()):
            for instance in ec2_backends[account][lent.region].all_instances():
                if getattr(instance, GPUFLEET_MARK, None) == lent.id and instance.state in LIVE_STATES:
                    found.append((account, instance))
        return sorted(found, key=lambda pair: str(pair[1].launch_time), reverse=True)

    def _give_back(self, source: Any, lent: Any, target: int) -> None:
        source.total += lent.total - target
        lent.total = target
        allocation = source.allocation
        allocation.update(Status="active", InstanceCount=target, TargetInstanceCount=target)
        allocation.pop("WarnedAt", None)
        if target == 0 and allocation.get("ZeroSizePreference") != "retain":
            lent.state = "cancelled"
            allocation["Status"] = "canceled"

    def settle_reclaims(self) -> None:
        """Terminate the warned instances of every reclaim that came due, and give their slots back."""
        from moto.ec2.models import ec2_backends

        now = time.time()
        for source in list(self.reservations.values()):  # type: ignore[attr-defined]
            allocation = source.allocation
            # due from the warning's time and the warning length now (shortening it fast-forwards a reclaim)
            if allocation is None or allocation.get("Status") != "updating" \
                    or allocation["WarnedAt"] + self.interruption_warning_s > now:
                continue
            lent = self.reservations[allocation["InterruptibleCapacityReservationId"]]  # type: ignore[attr-defined]
            target = allocation["TargetInstanceCount"]
            running = self._lent_instances(lent)
            for account, instance in running[:max(0, len(running) - target)]:
                ec2_backends[account][lent.region].terminate_instances([instance.id])
            self._give_back(source, lent, target)

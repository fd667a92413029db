"""Capacity reservations, placement groups and scaling activities for the emulated AWS.

moto 5.2 has none of these, so the sandbox server keeps them here, in the server process, next to
moto's own backends. Accounting is computed, not counted: a reservation's used count is the number
of live instances in any account that were launched against it (through a launch template whose
``CapacityReservationTarget`` names it, or a RunInstances request that does). Instances a reservation
cannot hold are not launched:

- a plain RunInstances beyond the reservation gets InsufficientInstanceCapacity (HTTP 500, which the
  SDKs retry, as real EC2 does);
- an Auto Scaling group asked for more than fits accepts the new desired size, launches what fits and
  records a failed scaling activity (StatusCode Failed, InsufficientInstanceCapacity), and launches
  the rest later when capacity frees, like the real service's retries.

Every launch and termination of a group's instance is a scaling activity (``Launching a new EC2
instance: i-...``, ``Terminating EC2 instance: i-...``), as the real service records them:
``gpufleet usage`` reads nodes' lives from them.

Reservations are visible to their owner and to the accounts a RAM resource share gives them to; the
shares themselves live in moto's RAM backend, taught here that capacity reservations are shareable
and given AssociateResourceShare (moto 5.2 has none; Pulumi's ram.ResourceAssociation and
ram.PrincipalAssociation both call it).
"""

from __future__ import annotations

import datetime
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import JsonRESTError, ServiceException

from gpufleet.automation.sandbox.interruptible import InterruptibleAllocations

LIVE_STATES = frozenset({"pending", "running"})
"""Instance states that hold a slot of a reservation."""

GPUFLEET_MARK = "_gpufleet_capacity_reservation_id"
"""Attribute set on moto's Instance objects: the reservation the instance consumes."""


class EmulatedError(ServiceException):
    """A service error with its HTTP status (the serializer's default is 400)."""

    status = 400

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message)
        self.status = status


def insufficient_capacity(message: str) -> EmulatedError:
    return EmulatedError("InsufficientInstanceCapacity", message, 500)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@dataclass
class CapacityReservation:
    """An On-Demand Capacity Reservation as EC2 describes it."""

    id: str
    owner_id: str
    region: str
    instance_type: str
    instance_platform: str
    availability_zone: str
    availability_zone_id: str
    total: int
    instance_match_criteria: str = "open"
    end_date_type: str = "unlimited"
    tenancy: str = "default"
    ebs_optimized: bool = False
    ephemeral_storage: bool = False
    state: str = "active"
    created: datetime.datetime = field(default_factory=_now)
    tags: list[dict[str, str]] = field(default_factory=list)
    interruptible: bool = False
    """Slots lent by another reservation's owner (``interruptible.py``), reclaimable."""
    source_id: str | None = None
    """An interruptible reservation's source reservation."""
    allocation: dict[str, Any] | None = None
    """A source's interruptible allocation (EC2's InterruptibleCapacityAllocation, plus WarnedAt)."""

    @property
    def arn(self) -> str:
        return f"arn:aws:ec2:{self.region}:{self.owner_id}:capacity-reservation/{self.id}"

    def describe(self, available: int) -> dict[str, Any]:
        return {
            "CapacityReservationId": self.id,
            "OwnerId": self.owner_id,
            "CapacityReservationArn": self.arn,
            "AvailabilityZoneId": self.availability_zone_id,
            "InstanceType": self.instance_type,
            "InstancePlatform": self.instance_platform,
            "AvailabilityZone": self.availability_zone,
            "Tenancy": self.tenancy,
            "TotalInstanceCount": self.total,
            "AvailableInstanceCount": available,
            "EbsOptimized": self.ebs_optimized,
            "EphemeralStorage": self.ephemeral_storage,
            "State": self.state,
            "StartDate": self.created,
            "EndDateType": self.end_date_type,
            "InstanceMatchCriteria": self.instance_match_criteria,
            "CreateDate": self.created,
            "Tags": list(self.tags),
            "ReservationType": "default",
            "Interruptible": self.interruptible,
            **({"InterruptionInfo": {"SourceCapacityReservationId": self.source_id, "InterruptionType": "adhoc"}}
               if self.source_id else {}),
            **({"InterruptibleCapacityAllocation": {k: v for k, v in self.allocation.items() if k != "WarnedAt"}}
               if self.allocation else {}),
        }


@dataclass
class PlacementGroup:
    name: str
    group_id: str
    account: str
    region: str
    strategy: str
    partition_count: int | None = None
    spread_level: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "GroupName": self.name, "GroupId": self.group_id, "State": "available",
            "Strategy": self.strategy, "Tags": list(self.tags),
            "GroupArn": f"arn:aws:ec2:{self.region}:{self.account}:placement-group/{self.name}",
        }
        if self.partition_count:
            out["PartitionCount"] = self.partition_count
        if self.spread_level:
            out["SpreadLevel"] = self.spread_level
        return out


class RequestContext(threading.local):
    """What the request being served asked for, read by the hooks inside moto's calls."""

    account: str = ""
    region: str = ""
    params: dict[str, Any] | None = None
    capacity_faults: int = 0
    """Instance launches still to fail with InsufficientInstanceCapacity (an injected fault)."""


def _tags_for(spec: list[dict[str, Any]] | None, resource_type: str) -> list[dict[str, str]]:
    tags: list[dict[str, str]] = []
    for item in spec or []:
        if item.get("ResourceType") == resource_type:
            tags.extend({"Key": t["Key"], "Value": t.get("Value", "")} for t in item.get("Tags", []))
    return tags


def _tag(tags: list[dict[str, str]], key: str) -> str:
    return next((t["Value"] for t in tags if t["Key"] == key), "")


def _hex_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:17]}"


class CapacityEmulator(InterruptibleAllocations):
    """The state moto lacks, and the hooks that make moto's launches respect it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.context = RequestContext()
        self.reservations: dict[str, CapacityReservation] = {}
        self.placement_groups: dict[tuple[str, str, str], PlacementGroup] = {}
        self.activities: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        self.interruptions: list[dict[str, Any]] = []
        """Interruption warnings sent to instances of reclaimed interruptible reservations."""

    def reset(self) -> None:
        with self.lock:
            self.reservations.clear()
            self.placement_groups.clear()
            self.activities.clear()
            self.interruptions.clear()

    # ---- moto access --------------------------------------------------------------------------

    @staticmethod
    def ec2(account: str, region: str) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[account][region]

    @staticmethod
    def autoscaling_groups() -> list[Any]:
        from moto.autoscaling.models import autoscaling_backends

        groups = []
        for account in list(autoscaling_backends.keys()):
            for backend in list(autoscaling_backends[account].values()):
                groups.extend(backend.autoscaling_groups.values())
        return groups

    def zone(self, account: str, region: str, *, name: str | None = None, zone_id: str | None = None) -> Any:
        for zone in self.ec2(account, region).describe_availability_zones():
            if (name and zone.name == name) or (zone_id and zone.zone_id == zone_id):
                return zone
        value = name or zone_id
        raise EmulatedError("InvalidParameterValue", f"Invalid availability zone: [{value}]")

    # ---- accounting ---------------------------------------------------------------------------

    def used(self, reservation: CapacityReservation) -> int:
        return sum(self.used_by_account(reservation).values())

    def used_by_account(self, reservation: CapacityReservation) -> dict[str, int]:
        from moto.ec2.models import ec2_backends

        counts: dict[str, int] = {}
        for account in list(ec2_backends.keys()):
            for instance in ec2_backends[account][reservation.region].all_instances():
                if getattr(instance, GPUFLEET_MARK, None) == reservation.id and instance.state in LIVE_STATES:
                    counts[account] = counts.get(account, 0) + 1
        return counts

    def available(self, reservation: CapacityReservation) -> int:
        if reservation.state != "active":
            return 0
        return max(0, reservation.total - self.used(reservation))

    def shared_with(self, reservation: CapacityReservation) -> set[str]:
        """Accounts a RAM resource share of the owner gives the reservation to."""
        from moto.ram.models import ram_backends

        accounts: set[str] = set()
        backend = ram_backends[reservation.owner_id][reservation.region]
        for share in backend.resource_shares:
            if share.status != "DELETED" and reservation.arn in share.resource_arns:
                accounts.update(p for p in share.principals if p.isdigit())
        return accounts

    def visible_to(self, reservation: CapacityReservation, account: str) -> bool:
        return account == reservation.owner_id or account in self.shared_with(reservation)

    def reservation_for(self, account: str, reservation_id: str) -> CapacityReservation:
        found = self.reservations.get(reservation_id)
        if found is None or not self.visible_to(found, account):
            raise EmulatedError("InvalidCapacityReservationId.NotFound",
                                f"The capacity reservation ID '{reservation_id}' does not exist")
        return found

    def fit(self, account: str, reservation_id: str, instance_type: str, zone_names: list[str],
            wanted: int) -> tuple[int, str]:
        """How many of ``wanted`` instances the reservation takes now, and why not more."""
        reservation = self.reservations.get(reservation_id)
        if reservation is None or not self.visible_to(reservation, account):
            return 0, (f"The capacity reservation {reservation_id} does not exist or is not shared "
                       f"with account {account}.")
        if reservation.state != "active":
            return 0, f"The capacity reservation {reservation_id} is {reservation.state}."
        if instance_type != reservation.instance_type:
            return 0, (f"The instance type {instance_type} does not match the capacity reservation "
                       f"{reservation_id} ({reservation.instance_type}).")
        if zone_names and reservation.availability_zone not in zone_names:
            return 0, (f"The capacity reservation {reservation_id} is in {reservation.availability_zone}, "
                       f"not in {', '.join(zone_names)}.")
        available = self.available(reservation)
        if self.context.capacity_faults > 0:
            available = 0
        granted = min(wanted, available)
        why = (f"Insufficient capacity in the Capacity Reservation {reservation_id}: "
               f"{available} of {reservation.total} {reservation.instance_type} available, {wanted} requested.")
        return granted, why

    @staticmethod
    def _target(data: dict[str, Any] | None) -> str | None:
        spec = (data or {}).get("CapacityReservationSpecification") or {}
        target = spec.get("CapacityReservationTarget") or {}
        return target.get("CapacityReservationId")

    def target_of_launch(self, backend: Any, launch_template: dict[str, Any] | None) -> str | None:
        if launch_template:
            return self._target(backend._get_template_from_args(launch_template).data)
        return self._target(self.context.params)

    def target_of_group(self, group: Any) -> str | None:
        template = getattr(group, "ec2_launch_template", None)
        if template is None:
            return None
        return self._target(template.get_version(group.launch_template_version).data)

    # ---- scaling activities -------------------------------------------------------------------

    def record_activity(self, group: Any, *, status: str, description: str, cause: str,
                        message: str = "", details: dict[str, str] | None = None) -> None:
        # Milliseconds, as the service stamps activities ("StartTime": "2013-08-19T20:53:25.584Z").
        now = datetime.datetime.now(datetime.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        activity = {
            "ActivityId": str(uuid.uuid4()), "AutoScalingGroupName": group.name,
            "AutoScalingGroupARN": group.arn, "Description": description, "Cause": cause,
            "StartTime": now, "EndTime": now, "StatusCode": status, "Progress": 100,
            "Details": "{" + ", ".join(f'"{k}":"{v}"' for k, v in (details or {}).items()) + "}",
        }
        if message:
            activity["StatusMessage"] = message
        self.activities[(group.account_id, group.region, group.name)].insert(0, activity)

    # ---- hooks into moto ----------------------------------------------------------------------

    def install(self) -> None:
        """Patch moto's classes in this (server) process; idempotent."""
        from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup
        from moto.ec2.models import EC2Backend
        from moto.ram.models import ResourceShare

        if getattr(EC2Backend, "_gpufleet_installed", False):
            return
        if "capacity-reservation" not in ResourceShare.SHAREABLE_RESOURCES:
            ResourceShare.SHAREABLE_RESOURCES.append("capacity-reservation")
        emulator = self
        run_instances = EC2Backend.run_instances
        replace_instances = FakeAutoScalingGroup.replace_autoscaling_group_instances
        terminate_in_group = AutoScalingBackend.terminate_instance
        notify_terminate = AutoScalingBackend.notify_terminate_instances
        set_desired = FakeAutoScalingGroup.set_desired_capacity

        def run_instances_marked(backend: Any, image_id: Any, count: int, user_data: Any,
                                 security_group_names: Any, **kwargs: Any) -> Any:
            target = emulator.target_of_launch(backend, kwargs.get("launch_template"))
            reservation = run_instances(backend, image_id, count, user_data, security_group_names, **kwargs)
            if target:
                for instance in reservation.instances:
                    setattr(instance, GPUFLEET_MARK, target)
            return reservation

        def replace_within_capacity(group: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
            target = emulator.target_of_group(group)
            if target is None:
                return replace_instances(group, count_needed, propagated_tags)
            before = len(group.instance_states)
            granted, why = emulator.fit(group.account_id, target, group.instance_type,
                                        list(group.availability_zones), count_needed)
            if emulator.context.capacity_faults > 0:
                emulator.context.capacity_faults -= 1
            cause = (f"At {_now().isoformat()} an instance was started in response to a difference between "
                     f"desired and actual capacity, increasing the capacity from {before} to "
                     f"{before + count_needed}.")
            if granted:
                replace_instances(group, granted, propagated_tags)
                for state in group.instance_states[before:]:
                    emulator.record_activity(
                        group, status="Successful", cause=cause,
                        description=f"Launching a new EC2 instance: {state.instance.id}",
                        details={"Subnet ID": state.instance.subnet_id or "",
                                 "Availability Zone": state.instance.placement})
            if granted < count_needed:
                emulator.record_activity(
                    group, status="Failed", cause=cause,
                    description="Launching a new EC2 instance.  Status Reason: Could not launch On-Demand "
                                f"Instances. InsufficientInstanceCapacity - {why} Launching EC2 instance failed.",
                    message=f"Could not launch On-Demand Instances. InsufficientInstanceCapacity - {why} "
                            "Launching EC2 instance failed.")
            return None

        def record_terminations(group: Any, instance_ids: list[str], cause: str) -> None:
            for iid in instance_ids:
                emulator.record_activity(group, status="Successful", cause=f"At {_now().isoformat()} {cause}",
                                         description=f"Terminating EC2 instance: {iid}")

        def terminate_instance(backend: Any, instance_id: str, should_decrement: bool) -> Any:
            group = next((g for g in backend.autoscaling_groups.values()
                          if any(s.instance.id == instance_id for s in g.instance_states)), None)
            activity = terminate_in_group(backend, instance_id, should_decrement)
            if group is not None:
                record_terminations(group, [instance_id], f"instance {instance_id} was taken out of service in "
                                    "response to a user request" + (", shrinking the capacity" if should_decrement
                                                                     else ""))
            return activity

        def set_desired_capacity(group: Any, new_capacity: int | None) -> None:
            before = {s.instance.id for s in group.instance_states}
            set_desired(group, new_capacity)
            gone = sorted(before - {s.instance.id for s in group.instance_states})
            record_terminations(group, gone, "an instance was taken out of service in response to a difference "
                                "between desired and actual capacity, shrinking the capacity")

        def notify_terminate_instances(backend: Any, instance_ids: list[str]) -> None:
            holders = [(g, [s.instance.id for s in g.instance_states if s.instance.id in instance_ids])
                       for g in backend.autoscaling_groups.values()]
            notify_terminate(backend, instance_ids)
            for group, ids in holders:
                record_terminations(group, ids, "an instance was taken out of service in response to an EC2 "
                                    "instance status check failure")

        EC2Backend.run_instances = run_instances_marked  # type: ignore[method-assign]
        AutoScalingBackend.terminate_instance = terminate_instance  # type: ignore[method-assign]
        AutoScalingBackend.notify_terminate_instances = notify_terminate_instances  # type: ignore[method-assign]
        FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity  # type: ignore[method-assign]
        FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_within_capacity  # type: ignore[method-assign]
        EC2Backend._gpufleet_installed = True  # type: ignore[attr-defined]

    def reconcile(self) -> None:
        """Groups below their desired size launch what now fits (the service's own retries)."""
        for group in self.autoscaling_groups():
            target = self.target_of_group(group)
            if target is None or target not in self.reservations:
                continue
            deficit = (group.desired_capacity or 0) - len(group.active_instances())
            if deficit <= 0 or self.available(self.reservations[target]) <= 0:
                continue
            group.replace_autoscaling_group_instances(deficit, group.get_propagated_tags())

    # ---- EC2 and Auto Scaling actions moto lacks ----------------------------------------------

    def check_run_instances(self, account: str, region: str, params: dict[str, Any]) -> None:
        """A plain RunInstances beyond its target reservation fails the way EC2 fails it."""
        backend = self.ec2(account, region)
        target = self.target_of_launch(backend, params.get("LaunchTemplate"))
        if target is None:
            return
        data = backend._get_template_from_args(params["LaunchTemplate"]).data if params.get("LaunchTemplate") else {}
        instance_type = params.get("InstanceType") or data.get("InstanceType") or "m1.small"
        placement = (params.get("Placement") or {}).get("AvailabilityZone")
        wanted = int(params.get("MinCount", 1))
        granted, why = self.fit(account, target, instance_type, [placement] if placement else [], wanted)
        if self.context.capacity_faults > 0:
            self.context.capacity_faults -= 1
        if granted < wanted:
            raise insufficient_capacity(why)

    def create_capacity_reservation(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        count = int(p.get("InstanceCount", 0))
        if count < 1:
            raise EmulatedError("InvalidParameterValue", "InstanceCount must be at least 1")
        if bool(p.get("AvailabilityZone")) == bool(p.get("AvailabilityZoneId")):
            raise EmulatedError("InvalidParameterCombination",
                                "Specify exactly one of AvailabilityZone and AvailabilityZoneId")
        zone = self.zone(account, region, name=p.get("AvailabilityZone"), zone_id=p.get("AvailabilityZoneId"))
        reservation = CapacityReservation(
            id=_hex_id("cr"), owner_id=account, region=region, instance_type=p["InstanceType"],
            instance_platform=p["InstancePlatform"], availability_zone=zone.name,
            availability_zone_id=zone.zone_id, total=count,
            instance_match_criteria=p.get("InstanceMatchCriteria", "open"),
            end_date_type=p.get("EndDateType", "unlimited"), tenancy=p.get("Tenancy", "default"),
            ebs_optimized=bool(p.get("EbsOptimized", False)), ephemeral_storage=bool(p.get("EphemeralStorage", False)),
            tags=_tags_for(p.get("TagSpecifications"), "capacity-reservation"),
        )
        self.reservations[reservation.id] = reservation
        return {"CapacityReservation": reservation.describe(self.available(reservation))}

    FILTERS = {
        "state": lambda r: r.state, "instance-type": lambda r: r.instance_type,
        "owner-id": lambda r: r.owner_id, "availability-zone": lambda r: r.availability_zone,
        "availability-zone-id": lambda r: r.availability_zone_id, "tenancy": lambda r: r.tenancy,
        "instance-match-criteria": lambda r: r.instance_match_criteria,
        "instance-platform": lambda r: r.instance_platform, "end-date-type": lambda r: r.end_date_type,
    }

    def _matches(self, reservation: CapacityReservation, filters: list[dict[str, Any]]) -> bool:
        for f in filters:
            name, values = f.get("Name", ""), f.get("Values", [])
            if name.startswith("tag:"):
                value = next((t["Value"] for t in reservation.tags if t["Key"] == name[4:]), None)
            elif name in self.FILTERS:
                value = self.FILTERS[name](reservation)
            else:
                raise EmulatedError("InvalidParameterValue", f"The filter '{name}' is invalid")
            if value not in values:
                return False
        return True

    def describe_capacity_reservations(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        ids = p.get("CapacityReservationIds") or []
        for rid in ids:
            self.reservation_for(account, rid)
        found = [
            r for r in self.reservations.values()
            if r.region == region and self.visible_to(r, account) and (not ids or r.id in ids)
            and self._matches(r, p.get("Filters") or [])
        ]
        return {"CapacityReservations": [r.describe(self.available(r)) for r in found]}

    def get_capacity_reservation_usage(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        """Owner only: how many instances each account runs in the reservation."""
        reservation = self.reservation_for(account, p["CapacityReservationId"])
        if reservation.owner_id != account:
            raise EmulatedError("UnauthorizedOperation", "Only the owner can see the usage of a capacity reservation")
        usages = [{"AccountId": a, "UsedInstanceCount": n} for a, n in sorted(self.used_by_account(reservation).items())]
        return {"CapacityReservationId": reservation.id, "InstanceType": reservation.instance_type,
                "TotalInstanceCount": reservation.total, "AvailableInstanceCount": self.available(reservation),
                "State": reservation.state, "InstanceUsages": usages}

    def cancel_capacity_reservation(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        reservation = self.reservation_for(account, p["CapacityReservationId"])
        if reservation.owner_id != account:
            raise EmulatedError("UnauthorizedOperation", "Only the owner can cancel a capacity reservation")
        reservation.state = "cancelled"
        return {"Return": True}

    def modify_capacity_reservation(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        reservation = self.reservation_for(account, p["CapacityReservationId"])
        if reservation.owner_id != account:
            raise EmulatedError("UnauthorizedOperation", "Only the owner can modify a capacity reservation")
        if reservation.state != "active":
            raise EmulatedError("InvalidCapacityReservationId.Malformed",
                                f"The capacity reservation {reservation.id} is {reservation.state}")
        if "InstanceCount" in p:
            count = int(p["InstanceCount"])
            in_use = self.used(reservation)
            if count < max(1, in_use):
                raise EmulatedError("InvalidParameterValue",
                                    f"InstanceCount {count} is below the {in_use} instances running in {reservation.id}")
            reservation.total = count
        if p.get("EndDateType"):
            reservation.end_date_type = p["EndDateType"]
        return {"Return": True}

    def create_placement_group(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("GroupName") or ""
        if not name:
            raise EmulatedError("MissingParameter", "The request must contain the parameter GroupName")
        key = (account, region, name)
        if key in self.placement_groups:
            raise EmulatedError("InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists.")
        strategy = p.get("Strategy", "cluster")
        if strategy not in ("cluster", "spread", "partition"):
            raise EmulatedError("InvalidParameterValue", f"Invalid placement group strategy: {strategy}")
        group = PlacementGroup(name=name, group_id=_hex_id("pg"), account=account, region=region,
                               strategy=strategy, partition_count=p.get("PartitionCount"),
                               spread_level=p.get("SpreadLevel"),
                               tags=_tags_for(p.get("TagSpecifications"), "placement-group"))
        self.placement_groups[key] = group
        return {"PlacementGroup": group.describe()}

    def describe_placement_groups(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        names, ids = p.get("GroupNames") or [], p.get("GroupIds") or []
        mine = [g for (a, r, _), g in self.placement_groups.items() if a == account and r == region]
        for name in names:
            if not any(g.name == name for g in mine):
                raise EmulatedError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
        found = [g for g in mine if (not names or g.name in names) and (not ids or g.group_id in ids)]
        return {"PlacementGroups": [g.describe() for g in found]}

    def delete_placement_group(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("GroupName") or ""
        if self.placement_groups.pop((account, region, name), None) is None:
            raise EmulatedError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
        return {}

    def associate_resource_share(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        """Add resources and principals to a share the caller owns, as RAM does (validated by moto's
        own rules for each); associating what is already there changes nothing."""
        from moto.ram.models import ram_backends

        arn = p.get("resourceShareArn") or ""
        share = next((s for s in ram_backends[account][region].resource_shares
                      if s.arn == arn and s.status != "DELETED"), None)
        if share is None:
            raise EmulatedError("UnknownResourceException", f"ResourceShare {arn} could not be found.")
        resources = [r for r in p.get("resourceArns") or [] if r not in share.resource_arns]
        principals = [x for x in p.get("principals") or [] if x not in share.principals]
        try:
            share.add_resources(resources)
            share.add_principals(principals)
        except JsonRESTError as err:
            raise EmulatedError(err.error_type, err.message) from None
        now = _now()
        entities = [(r, "RESOURCE") for r in p.get("resourceArns") or []] + [
            (x, "PRINCIPAL") for x in p.get("principals") or []]
        return {"resourceShareAssociations": [
            {"resourceShareArn": share.arn, "resourceShareName": share.name, "associatedEntity": entity,
             "associationType": kind, "status": "ASSOCIATED", "creationTime": now, "lastUpdatedTime": now,
             "external": kind == "PRINCIPAL" and entity.isdigit() and entity != account}
            for entity, kind in entities]}

    def describe_scaling_activities(self, account: str, region: str, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("AutoScalingGroupName")
        ids = set(p.get("ActivityIds") or [])
        found = [
            a for (acc, reg, group), items in self.activities.items() if acc == account and reg == region
            and (not name or group == name) for a in items if not ids or a["ActivityId"] in ids
        ]
        found.sort(key=lambda a: a["StartTime"], reverse=True)
        limit = int(p.get("MaxRecords") or 100)
        return {"Activities": found[:limit]}

    HANDLERS = {
        ("ec2", "CreateCapacityReservation"): "create_capacity_reservation",
        ("ec2", "DescribeCapacityReservations"): "describe_capacity_reservations",
        ("ec2", "CancelCapacityReservation"): "cancel_capacity_reservation",
        ("ec2", "GetCapacityReservationUsage"): "get_capacity_reservation_usage",
        ("ec2", "ModifyCapacityReservation"): "modify_capacity_reservation",
        ("ec2", "CreateInterruptibleCapacityReservationAllocation"): "create_interruptible_capacity_reservation_allocation",
        ("ec2", "UpdateInterruptibleCapacityReservationAllocation"): "update_interruptible_capacity_reservation_allocation",
        ("ec2", "CreatePlacementGroup"): "create_placement_group",
        ("ec2", "DescribePlacementGroups"): "describe_placement_groups",
        ("ec2", "DeletePlacementGroup"): "delete_placement_group",
        ("autoscaling", "DescribeScalingActivities"): "describe_scaling_activities",
        ("ram", "AssociateResourceShare"): "associate_resource_share",
    }

    def summary(self) -> list[dict[str, Any]]:
        """Every reservation with its accounting, for tests and `gpufleet sandbox status`; ``name`` is
        its Name tag, else its gpufleet:pool tag."""
        return [
            {"id": r.id, "owner": r.owner_id, "region": r.region, "instance_type": r.instance_type,
             "az": r.availability_zone, "az_id": r.availability_zone_id, "total": r.total,
             "used": self.used(r), "available": self.available(r), "state": r.state,
             "shared_with": sorted(self.shared_with(r)),
             "name": _tag(r.tags, "Name") or _tag(r.tags, "gpufleet:pool")}
            for r in self.reservations.values()
        ]


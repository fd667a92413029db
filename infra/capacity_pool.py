"""Reserved GPU capacity in the platform account, shared by RAM with the consumer accounts."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pulumi
from pulumi_aws import ec2, get_availability_zone_output, ram

from gpufleet.infra import catalog, key_policies
from gpufleet.infra.stackfile import ACCOUNT_ID, AZ_ID, NAME, REGION, RESERVATION_ID, PoolKind

__all__ = ["CapacityPool", "CapacityPoolArgs", "PoolSource"]


class PoolSource(enum.StrEnum):
    """Where the reservation comes from."""

    CREATE = "create"
    """An ODCR made by this stack."""
    ADOPT = "adopt"
    """An existing reservation or capacity block, bought outside Pulumi, referenced by id."""
    NONE = "none"
    """On-demand: no reservation at all."""


@dataclass(frozen=True, kw_only=True)
class CapacityPoolArgs:
    instance_type: str
    """Instance type the reservation holds."""
    az_id: str
    """AZ ID of the reservation (mapped to this account's AZ name at deploy time)."""
    count: int
    """Instances reserved."""
    kind: PoolKind
    """odcr, capacity-block or on-demand."""
    account_id: str
    """Platform account that owns the reservation."""
    region: str
    """Region of the reservation."""
    reservation_id: str | None = None
    """Adopt this reservation (cr-...) instead of creating one; required for capacity blocks."""
    consumer_account_ids: tuple[str, ...] = ()
    """Accounts the reservation is shared with through RAM."""

    def __post_init__(self) -> None:
        try:
            catalog.lookup(self.instance_type)
        except catalog.UnknownInstanceTypeError as err:
            raise ValueError(f"instance_type: {err}") from None
        if not AZ_ID.match(self.az_id):
            raise ValueError(f"az_id: {self.az_id!r} is not an AZ ID like use1-az4")
        if self.count < 1:
            raise ValueError(f"count: {self.count!r} must be at least 1")
        if self.reservation_id is not None and not RESERVATION_ID.match(self.reservation_id):
            raise ValueError(f"reservation_id: {self.reservation_id!r} is not a capacity reservation id")
        if self.kind is PoolKind.CAPACITY_BLOCK and self.reservation_id is None:
            raise ValueError("reservation_id: None, but a capacity block is bought outside Pulumi; give its id")
        if self.kind is PoolKind.ON_DEMAND and self.reservation_id is not None:
            raise ValueError(f"reservation_id: {self.reservation_id!r} given for an on-demand pool")
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        for account in self.consumer_account_ids:
            if not ACCOUNT_ID.match(account) or account == self.account_id:
                raise ValueError(f"consumer_account_ids: {account!r} is not another 12-digit account id")

    @property
    def source(self) -> PoolSource:
        if self.kind is PoolKind.ON_DEMAND:
            return PoolSource.NONE
        return PoolSource.ADOPT if self.reservation_id else PoolSource.CREATE


class CapacityPool(pulumi.ComponentResource):
    """Outputs: ``reservation_id`` and ``reservation_arn`` (None for on-demand pools)."""

    def __init__(self, name: str, args: CapacityPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:capacity:CapacityPool", name, None, opts)
        if not NAME.match(name):
            raise ValueError(f"name: {name!r} must be lowercase letters, digits and dashes")
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        self.reservation_id: pulumi.Output[str] | None = None
        self.reservation_arn: pulumi.Output[str] | None = None

        if args.source is PoolSource.CREATE:
            # pulumi-aws 7 takes an AZ name here; AZ names differ per account, so map the ID in
            # this account (through the stack's provider) rather than trusting config.
            zone = get_availability_zone_output(zone_id=args.az_id, opts=pulumi.InvokeOutputOptions(parent=self))
            reservation = ec2.CapacityReservation(
                f"{name}-odcr",
                instance_type=args.instance_type,
                instance_platform="Linux/UNIX",
                availability_zone=zone.name,
                instance_count=args.count,
                instance_match_criteria="targeted",
                tenancy="default",
                end_date_type="unlimited",
                ebs_optimized=True,
                tags={"gpufleet:pool": name, "gpufleet:az-id": args.az_id},
                opts=child,
            )
            self.reservation_id = reservation.id
            self.reservation_arn = reservation.arn
        elif args.source is PoolSource.ADOPT:
            self.reservation_id = pulumi.Output.from_input(args.reservation_id)  # type: ignore[arg-type]
            self.reservation_arn = pulumi.Output.from_input(
                f"arn:{partition}:ec2:{args.region}:{args.account_id}:capacity-reservation/{args.reservation_id}")

        if self.reservation_arn is not None and args.consumer_account_ids:
            share = ram.ResourceShare(f"{name}-share", name=f"gpufleet-{name}",
                                      allow_external_principals=True, opts=child)
            ram.ResourceAssociation(f"{name}-share-reservation", resource_arn=self.reservation_arn,
                                    resource_share_arn=share.arn, opts=child)
            for account in args.consumer_account_ids:
                ram.PrincipalAssociation(f"{name}-share-{account}", principal=account,
                                         resource_share_arn=share.arn, opts=child)
        self.register_outputs({"reservationId": self.reservation_id, "reservationArn": self.reservation_arn})

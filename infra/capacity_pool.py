"""Reserved GPU capacity in the platform account, shared by RAM with the consumer accounts."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pulumi
from pulumi_aws import ec2, get_availability_zone_output, ram

from gpufleet.infra import key_policies
from gpufleet.infra.model import PoolKind, PoolSpec, RamSharing

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
    pool: PoolSpec
    """The pool as the stack file declares it (validated there): instance type, AZ ID, count,
    kind and the reservation to adopt, if any."""
    account_id: str
    """Platform account that owns the reservation."""
    region: str
    """Region of the reservation."""
    consumer_account_ids: tuple[str, ...] = ()
    """Accounts the reservation is shared with through RAM."""
    ram_sharing: RamSharing = RamSharing.ORGANIZATION
    """organization: principals inside the Organization only; invitation: external principals,
    each consumer accepts."""

    @property
    def source(self) -> PoolSource:
        if self.pool.kind is PoolKind.ON_DEMAND:
            return PoolSource.NONE
        return PoolSource.ADOPT if self.pool.reservation_id else PoolSource.CREATE


class CapacityPool(pulumi.ComponentResource):
    """Outputs: ``reservation_id`` and ``reservation_arn`` (None for on-demand pools), ``share_arn``
    (None when shared with nobody)."""

    def __init__(self, name: str, args: CapacityPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:capacity:CapacityPool", name, None, opts)
        pool = args.pool
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        self.reservation_id: pulumi.Output[str] | None = None
        self.reservation_arn: pulumi.Output[str] | None = None
        self.share_arn: pulumi.Output[str] | None = None

        if args.source is PoolSource.CREATE:
            # pulumi-aws 7 takes an AZ name here; AZ names differ per account, so map the ID in
            # this account (through the stack's provider) rather than trusting config.
            zone = get_availability_zone_output(zone_id=pool.az_id, opts=pulumi.InvokeOutputOptions(parent=self))
            reservation = ec2.CapacityReservation(
                f"{name}-odcr",
                instance_type=pool.instance_type,
                instance_platform="Linux/UNIX",
                availability_zone=zone.name,
                instance_count=pool.count,
                instance_match_criteria="targeted",
                tenancy="default",
                end_date_type="unlimited",
                ebs_optimized=True,
                tags={"gpufleet:pool": name, "gpufleet:az-id": pool.az_id},
                opts=child,
            )
            self.reservation_id = reservation.id
            self.reservation_arn = reservation.arn
        elif args.source is PoolSource.ADOPT:
            self.reservation_id = pulumi.Output.from_input(pool.reservation_id)  # type: ignore[arg-type]
            self.reservation_arn = pulumi.Output.from_input(
                f"arn:{partition}:ec2:{args.region}:{args.account_id}:capacity-reservation/{pool.reservation_id}")

        if self.reservation_arn is not None and args.consumer_account_ids:
            # Inside the Organization (RAM sharing with AWS Organizations enabled) the consumer
            # accounts see the share at once; outside it each gets an invitation to accept.
            share = ram.ResourceShare(
                f"{name}-share", name=f"gpufleet-{name}",
                allow_external_principals=args.ram_sharing is RamSharing.INVITATION, opts=child)
            self.share_arn = share.arn
            ram.ResourceAssociation(f"{name}-share-reservation", resource_arn=self.reservation_arn,
                                    resource_share_arn=share.arn, opts=child)
            for account in args.consumer_account_ids:
                ram.PrincipalAssociation(f"{name}-share-{account}", principal=account,
                                         resource_share_arn=share.arn, opts=child)
        self.register_outputs({"reservationId": self.reservation_id, "reservationArn": self.reservation_arn,
                               "shareArn": self.share_arn})

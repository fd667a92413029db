"""CapacityPool under mocks: a targeted ODCR in the AZ the ID maps to in this account, or an adopted
reservation; shared by RAM with each consumer account."""

from __future__ import annotations

import pulumi

from gpufleet.infra.capacity_pool import CapacityPool, CapacityPoolArgs
from gpufleet.infra.model import PoolKind, PoolSpec, RamSharing
from gpufleet.infra.offline.mocks import az_name

PLATFORM = "222222222222"  # the account of the mock runtime (tests/infra/conftest.py)
CONSUMERS = ("333333333333", "444444444444")


def pool(kind: PoolKind = PoolKind.ODCR, reservation_id: str | None = None,
         ram_sharing: RamSharing = RamSharing.ORGANIZATION) -> CapacityPool:
    spec = PoolSpec(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", count=8, kind=kind,
                    reservation_id=reservation_id)
    return CapacityPool("h100", CapacityPoolArgs(pool=spec, account_id=PLATFORM, region="us-east-1",
                                                 consumer_account_ids=CONSUMERS, ram_sharing=ram_sharing))


def test_odcr_is_targeted_unlimited_in_the_mapped_az_and_shared(mock_runtime):
    p = pool()

    def check(args):
        reservation_id, arn = args
        assert reservation_id.startswith("cr-"), reservation_id
        assert arn == f"arn:aws:ec2:us-east-1:{PLATFORM}:capacity-reservation/{reservation_id}", arn
        return True

    assert mock_runtime.settle(pulumi.Output.all(p.reservation_id, p.reservation_arn).apply(check))
    [odcr] = mock_runtime.registered("aws:ec2/capacityReservation:CapacityReservation")
    inputs = odcr["inputs"]
    assert (inputs["instanceMatchCriteria"], inputs["endDateType"], inputs["tenancy"]) == ("targeted", "unlimited", "default")
    assert (inputs["instanceType"], inputs["instanceCount"]) == ("p5.48xlarge", 8)
    assert inputs["availabilityZone"] == az_name("us-east-1", PLATFORM, "use1-az4"), odcr["urn"]
    [share] = mock_runtime.registered("aws:ram/resourceShare:ResourceShare")
    # Inside the Organization (the default): no external principals.
    assert share["inputs"]["allowExternalPrincipals"] is False
    assert mock_runtime.settle(p.share_arn) == share["outputs"]["arn"]
    [assoc] = mock_runtime.registered("aws:ram/resourceAssociation:ResourceAssociation")
    assert assoc["inputs"]["resourceArn"] == odcr["outputs"]["arn"]
    principals = mock_runtime.registered("aws:ram/principalAssociation:PrincipalAssociation")
    assert sorted(p["inputs"]["principal"] for p in principals) == sorted(CONSUMERS)
    assert {p["inputs"]["resourceShareArn"] for p in principals} == {share["outputs"]["arn"]}


def test_invitation_sharing_allows_external_principals(mock_runtime):
    p = pool(ram_sharing=RamSharing.INVITATION)
    mock_runtime.settle(p.share_arn)
    [share] = mock_runtime.registered("aws:ram/resourceShare:ResourceShare")
    assert share["inputs"]["allowExternalPrincipals"] is True


def test_capacity_block_is_adopted_not_created(mock_runtime):
    p = pool(PoolKind.CAPACITY_BLOCK, "cr-0123456789abcdef0")
    arn = mock_runtime.settle(p.reservation_arn)
    assert arn == f"arn:aws:ec2:us-east-1:{PLATFORM}:capacity-reservation/cr-0123456789abcdef0"
    assert mock_runtime.registered("aws:ec2/capacityReservation:CapacityReservation") == []
    [assoc] = mock_runtime.registered("aws:ram/resourceAssociation:ResourceAssociation")
    assert assoc["inputs"]["resourceArn"] == arn


def test_on_demand_pool_reserves_and_shares_nothing(mock_runtime):
    p = pool(PoolKind.ON_DEMAND)
    assert p.reservation_id is None
    mock_runtime.settle(p.urn)
    assert [r["type"] for r in mock_runtime.monitor.registrations if r["custom"]] == []

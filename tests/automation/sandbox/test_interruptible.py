"""Interruptible Capacity Reservations in the emulator, seen through boto3: the platform account
lends unused slots of the h100 ODCR (no end date) as an interruptible reservation shared with the
training account; training launches into it; a reclaim warns the instances running in the lent
slots and terminates them when the warning runs out, and the slots go back to the source."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from gpufleet.automation.inventory import load_inventory
from tests.automation.sandbox.test_capacity import NO_RETRY, asg, asg_name, session_for

POOL = "h100-use1-az4"


def describe(ec2, rid: str) -> dict:
    return ec2.describe_capacity_reservations(CapacityReservationIds=[rid])["CapacityReservations"][0]


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


@pytest.fixture
def lent(sandbox):
    """The h100 ODCR grown to 10 (3 slots unused) and 2 of them lent to the training account."""
    rid = load_inventory(sandbox.inventory).pool(POOL).reservation_id
    platform = boto3.client("ec2", config=NO_RETRY)
    platform.modify_capacity_reservation(CapacityReservationId=rid, InstanceCount=10)
    made = platform.create_interruptible_capacity_reservation_allocation(CapacityReservationId=rid, InstanceCount=2)
    assert (made["SourceCapacityReservationId"], made["TargetInstanceCount"], made["Status"], made["InterruptionType"]) \
        == (rid, 2, "active", "adhoc")
    source = describe(platform, rid)
    allocation = source["InterruptibleCapacityAllocation"]
    training = sandbox.outputs()["stacks"]["training"]["accountId"]
    lent_id = allocation["InterruptibleCapacityReservationId"]
    arn = describe(platform, lent_id)["CapacityReservationArn"]
    boto3.client("ram").create_resource_share(name="lend-h100", resourceArns=[arn], principals=[training])
    yield {"source": rid, "lent": lent_id, "platform": platform}
    sandbox.client.set_interruption_warning(120)


def launch_into(sandbox, reservation_id: str, count: int) -> list[str]:
    """Training runs ``count`` instances targeting the reservation, in the pool's subnet."""
    training = session_for(sandbox, "training")
    ec2 = training.client("ec2", config=NO_RETRY)
    group = asg(training, asg_name(sandbox, "training", "train-h100"))
    [version] = ec2.describe_launch_template_versions(LaunchTemplateId=group["LaunchTemplate"]["LaunchTemplateId"],
                                                      Versions=["$Latest"])["LaunchTemplateVersions"]
    name = f"borrow-{reservation_id}-{len(ec2.describe_launch_templates()['LaunchTemplates'])}"
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": version["LaunchTemplateData"]["ImageId"], "InstanceType": "p5.48xlarge",
        "CapacityReservationSpecification": {"CapacityReservationTarget": {"CapacityReservationId": reservation_id}}})
    out = ec2.run_instances(LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
                            MinCount=count, MaxCount=count, SubnetId=group["VPCZoneIdentifier"])
    return [i["InstanceId"] for i in out["Instances"]]


def states(sandbox, ids: list[str]) -> set[str]:
    ec2 = session_for(sandbox, "training").client("ec2")
    return {i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}


def test_lent_slots_are_an_interruptible_reservation_taken_from_the_source(sandbox, lent):
    platform = lent["platform"]
    source = describe(platform, lent["source"])
    assert (source["TotalInstanceCount"], source["AvailableInstanceCount"], source["Interruptible"]) == (8, 1, False)
    assert source["InterruptibleCapacityAllocation"]["InstanceCount"] == 2
    borrowed = describe(platform, lent["lent"])
    assert borrowed["Interruptible"] is True and borrowed["InstanceMatchCriteria"] == "targeted"
    assert borrowed["InterruptionInfo"] == {"SourceCapacityReservationId": lent["source"], "InterruptionType": "adhoc"}
    assert (borrowed["TotalInstanceCount"], borrowed["AvailableInstanceCount"]) == (2, 2)
    with pytest.raises(ClientError) as err:  # one allocation a source
        platform.create_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"], InstanceCount=1)
    assert code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:  # only the owner lends or reclaims
        session_for(sandbox, "training").client("ec2", config=NO_RETRY).update_interruptible_capacity_reservation_allocation(
            CapacityReservationId=lent["source"], TargetInstanceCount=0)
    assert code(err) in {"UnauthorizedOperation", "InvalidCapacityReservationId.NotFound"}
    with pytest.raises(ClientError) as err:  # growing takes only available slots (1 left)
        platform.update_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"],
                                                                      TargetInstanceCount=4)
    assert code(err) == "InvalidParameterValue"
    ids = launch_into(sandbox, lent["lent"], 2)
    assert describe(platform, lent["lent"])["AvailableInstanceCount"] == 0
    with pytest.raises(ClientError) as err:
        launch_into(sandbox, lent["lent"], 1)
    assert code(err) == "InsufficientInstanceCapacity"
    assert states(sandbox, ids) == {"running"}


def test_a_reclaim_warns_the_borrowers_then_terminates_them_and_gives_the_slots_back(sandbox, lent):
    platform = lent["platform"]
    ids = launch_into(sandbox, lent["lent"], 2)
    # one slot unused: reclaiming it is immediate, nobody is warned
    platform.update_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"],
                                                                  TargetInstanceCount=3)
    out = platform.update_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"],
                                                                        TargetInstanceCount=2)
    assert out["Status"] == "active" and not sandbox.client.interruptions()
    assert describe(platform, lent["source"])["TotalInstanceCount"] == 8

    out = platform.update_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"],
                                                                        TargetInstanceCount=0)
    assert (out["Status"], out["InstanceCount"], out["TargetInstanceCount"]) == ("updating", 2, 0)
    warnings = sandbox.client.interruptions()
    assert sorted(w["detail"]["instance-id"] for w in warnings) == sorted(ids)
    assert {w["detail-type"] for w in warnings} == {"EC2 Capacity Reservation Instance Interruption Warning"}
    assert states(sandbox, ids) == {"running"}, "the borrowers keep running through the warning"
    with pytest.raises(ClientError) as err:
        platform.update_interruptible_capacity_reservation_allocation(CapacityReservationId=lent["source"],
                                                                      TargetInstanceCount=1)
    assert code(err) == "IncorrectState"
    assert describe(platform, lent["source"])["InterruptibleCapacityAllocation"]["Status"] == "updating"
    # the warning (EC2: 2 minutes) runs out: shortened to 0, the next request settles the reclaim
    sandbox.client.set_interruption_warning(0)
    source = describe(platform, lent["source"])
    assert source["InterruptibleCapacityAllocation"]["Status"] == "canceled"
    assert (source["TotalInstanceCount"], source["AvailableInstanceCount"]) == (10, 3)
    assert describe(platform, lent["lent"])["State"] == "cancelled"
    assert states(sandbox, ids) <= {"shutting-down", "terminated"}


def test_a_reservation_with_an_end_date_lends_nothing(sandbox):
    rid = load_inventory(sandbox.inventory).pool(POOL).reservation_id
    platform = boto3.client("ec2", config=NO_RETRY)
    platform.modify_capacity_reservation(CapacityReservationId=rid, EndDateType="limited")
    with pytest.raises(ClientError) as err:
        platform.create_interruptible_capacity_reservation_allocation(CapacityReservationId=rid, InstanceCount=1)
    assert code(err) == "InvalidParameterValue" and "no end date" in err.value.response["Error"]["Message"]

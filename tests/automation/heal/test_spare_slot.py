"""The free-slot rule of a held healer's spare (heal/spare_slot.py), at the AWS boundary: real boto3
clients whose requests and responses botocore's Stubber validates against the EC2 and Auto Scaling
service models. Covers what the sandbox cannot hold still: a launch in flight in the healer's own
group (the sandbox's groups launch into a freed slot at once)."""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.stub import Stubber

from gpufleet.automation.heal.spare_slot import by_reservation

RID = "cr-0123456789abcdef0"
ASG = "train-h100-asg"


def reservation(available: int, state: str = "active") -> dict:
    return {"CapacityReservations": [{
        "CapacityReservationId": RID, "OwnerId": "111111111111", "InstanceType": "p5.48xlarge",
        "AvailabilityZoneId": "use1-az4", "TotalInstanceCount": 8, "AvailableInstanceCount": available,
        "State": state, "StartDate": datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)}]}


def group(desired: int, states: list[str]) -> dict:
    return {"AutoScalingGroups": [{
        "AutoScalingGroupName": ASG, "MinSize": 0, "MaxSize": 8, "DesiredCapacity": desired,
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2",
        "CreatedTime": datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
        "Instances": [{"InstanceId": f"i-{n:017x}", "AvailabilityZone": "us-east-1a", "LifecycleState": s,
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False}
                      for n, s in enumerate(states)]}]}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    asg = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(ec2) as ec2_stub, Stubber(asg) as asg_stub:
        yield ec2, asg, ec2_stub, asg_stub
        ec2_stub.assert_no_pending_responses()
        asg_stub.assert_no_pending_responses()


def slot(aws, available: int, desired: int, states: list[str], state: str = "active"):
    ec2, asg, ec2_stub, asg_stub = aws
    ec2_stub.add_response("describe_capacity_reservations", reservation(available, state),
                          {"CapacityReservationIds": [RID]})
    asg_stub.add_response("describe_auto_scaling_groups", group(desired, states),
                          {"AutoScalingGroupNames": [ASG], "MaxRecords": 100})
    return by_reservation(lambda _stack: ec2, lambda _stack: asg, "training", "h100", RID, [["training", ASG]])


def test_a_launch_in_flight_in_the_healers_group_takes_the_free_instance(aws):
    got = slot(aws, 1, 6, ["InService"] * 5)
    assert not got.free and got.read["launching"] == 1
    assert got.why == f"pool h100: reservation {RID} has 1 free instances and 1 launches in flight in this healer's groups"


def test_a_pending_instance_already_holds_its_slot_and_is_not_counted_twice(aws):
    got = slot(aws, 1, 6, ["InService"] * 5 + ["Pending"])
    assert got.free and got.read == {"reservation": RID, "state": "active", "available": 1, "total": 8, "launching": 0}


def test_a_leaving_instance_does_not_count_as_live(aws):
    # Its replacement is still to launch: desired 6, 5 live (one Terminating), so one in flight.
    got = slot(aws, 2, 6, ["InService"] * 5 + ["Terminating"])
    assert got.free and got.read["launching"] == 1


def test_a_reservation_that_is_not_active_launches_nothing(aws):
    got = slot(aws, 3, 5, ["InService"] * 5, state="expired")
    assert not got.free and got.why == f"pool h100: reservation {RID} is expired"

"""The emulator extension's capacity accounting, seen through boto3 as the automation sees AWS."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gpufleet.automation.inventory import load_inventory
from tests.automation.sandbox.deployer import DeployerAccess

NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


def session_for(sandbox, stack: str) -> boto3.Session:
    """Credentials in a stack's account, unrestricted (the deployer's): these tests exercise the
    capacity emulator, not IAM (tests/automation/sandbox/test_iam_enforced.py does)."""
    return DeployerAccess(sandbox).session(stack)


def reservation(sandbox, pool: str) -> dict:
    inv = load_inventory(sandbox.inventory)
    rid = inv.pool(pool).reservation_id
    return boto3.client("ec2").describe_capacity_reservations(CapacityReservationIds=[rid])["CapacityReservations"][0]


def asg_name(sandbox, stack: str, group: str) -> str:
    """The Auto Scaling group the program made for a node group (from the inventory)."""
    return next(g.group.asg_name for g in load_inventory(sandbox.inventory).node_groups
                if (g.stack, g.group.name) == (stack, group))


def asg(session: boto3.Session, name: str) -> dict:
    return session.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def test_initial_instances_consume_the_shared_reservation(sandbox):
    h100 = reservation(sandbox, "h100-use1-az4")
    # training 5 + inference 2 launched into the 8-instance reservation from two other accounts
    assert (h100["TotalInstanceCount"], h100["AvailableInstanceCount"]) == (8, 1)
    h200 = reservation(sandbox, "h200-use1-az6")
    assert (h200["TotalInstanceCount"], h200["AvailableInstanceCount"]) == (4, 0)
    accounts = {name: out["accountId"] for name, out in sandbox.outputs()["stacks"].items()}
    usage = boto3.client("ec2").get_capacity_reservation_usage(CapacityReservationId=h100["CapacityReservationId"])
    assert {u["AccountId"]: u["UsedInstanceCount"] for u in usage["InstanceUsages"]} == {
        accounts["training"]: 5, accounts["inference"]: 2}


def test_scaling_beyond_the_reservation_launches_what_fits_and_records_a_failed_activity(sandbox):
    inference = session_for(sandbox, "inference")
    name = asg_name(sandbox, "inference", "serve-h100")
    inference.client("autoscaling").set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=5)

    group = asg(inference, name)
    assert group["DesiredCapacity"] == 5  # accepted on the wire, as AWS does
    assert len(group["Instances"]) == 3  # 2 + the 1 free slot; the other 2 did not fit
    assert reservation(sandbox, "h100-use1-az4")["AvailableInstanceCount"] == 0
    activities = inference.client("autoscaling").describe_scaling_activities(AutoScalingGroupName=name)["Activities"]
    failed = [a for a in activities if a["StatusCode"] == "Failed"]
    assert len(failed) == 1
    assert "InsufficientInstanceCapacity" in failed[0]["StatusMessage"]
    assert sum(a["StatusCode"] == "Successful" for a in activities) == 3  # 2 at creation + 1 now


def test_released_capacity_is_taken_by_a_group_still_below_its_desired_size(sandbox):
    inference, training = session_for(sandbox, "inference"), session_for(sandbox, "training")
    serve, train = asg_name(sandbox, "inference", "serve-h100"), asg_name(sandbox, "training", "train-h100")
    inference.client("autoscaling").set_desired_capacity(AutoScalingGroupName=serve, DesiredCapacity=4)
    assert len(asg(inference, serve)["Instances"]) == 3
    victim = asg(training, train)["Instances"][0]["InstanceId"]
    training.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=True)

    assert len(asg(training, train)["Instances"]) == 4
    assert len(asg(inference, serve)["Instances"]) == 4
    assert reservation(sandbox, "h100-use1-az4")["AvailableInstanceCount"] == 0


def test_run_instances_beyond_the_reservation_is_insufficient_capacity(sandbox):
    training = session_for(sandbox, "training")
    ec2 = training.client("ec2", config=NO_RETRY)
    group = asg(training, asg_name(sandbox, "training", "train-h100"))
    template = {"LaunchTemplateId": group["LaunchTemplate"]["LaunchTemplateId"]}
    subnet = group["VPCZoneIdentifier"]  # the subnet in the pool's AZ ID
    ec2.run_instances(LaunchTemplate=template, MinCount=1, MaxCount=1, SubnetId=subnet)  # the one free slot
    with pytest.raises(ClientError) as err:
        ec2.run_instances(LaunchTemplate=template, MinCount=1, MaxCount=1, SubnetId=subnet)
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500  # a server error: SDKs retry it
    assert reservation(sandbox, "h100-use1-az4")["AvailableInstanceCount"] == 0


def test_a_reservation_not_shared_with_an_account_is_invisible_and_unusable_there(sandbox):
    inference = session_for(sandbox, "inference")
    ec2 = inference.client("ec2", config=NO_RETRY)
    visible = {t["Value"] for r in ec2.describe_capacity_reservations()["CapacityReservations"]
               for t in r["Tags"] if t["Key"] == "gpufleet:pool"}
    assert visible == {"h100-use1-az4"}  # h200 is shared with training only
    h200 = load_inventory(sandbox.inventory).pool("h200-use1-az6").reservation_id
    with pytest.raises(ClientError) as err:
        ec2.describe_capacity_reservations(CapacityReservationIds=[h200])
    assert err.value.response["Error"]["Code"] == "InvalidCapacityReservationId.NotFound"

    template = ec2.create_launch_template(LaunchTemplateName="steal", LaunchTemplateData={
        "ImageId": "ami-0123456789abcdef0", "InstanceType": "p5en.48xlarge",
        "CapacityReservationSpecification": {"CapacityReservationTarget": {"CapacityReservationId": h200}}})
    with pytest.raises(ClientError) as err:
        ec2.run_instances(LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
                          MinCount=1, MaxCount=1)
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"


def test_modify_and_cancel_are_owner_only_and_keep_running_instances(sandbox):
    rid = load_inventory(sandbox.inventory).pool("h100-use1-az4").reservation_id
    platform = boto3.client("ec2", config=NO_RETRY)
    with pytest.raises(ClientError) as err:
        platform.modify_capacity_reservation(CapacityReservationId=rid, InstanceCount=6)  # 7 instances run in it
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    platform.modify_capacity_reservation(CapacityReservationId=rid, InstanceCount=10)
    assert reservation(sandbox, "h100-use1-az4")["AvailableInstanceCount"] == 3

    with pytest.raises(ClientError) as err:
        session_for(sandbox, "training").client("ec2", config=NO_RETRY).cancel_capacity_reservation(CapacityReservationId=rid)
    assert err.value.response["Error"]["Code"] == "UnauthorizedOperation"
    platform.cancel_capacity_reservation(CapacityReservationId=rid)
    cancelled = reservation(sandbox, "h100-use1-az4")
    assert (cancelled["State"], cancelled["AvailableInstanceCount"]) == ("cancelled", 0)


def test_placement_groups_are_per_account(sandbox):
    training, inference = session_for(sandbox, "training"), session_for(sandbox, "inference")
    created = training.client("ec2").create_placement_group(GroupName="efa", Strategy="cluster")["PlacementGroup"]
    assert created["Strategy"] == "cluster" and created["GroupId"].startswith("pg-")
    assert [g["GroupName"] for g in training.client("ec2").describe_placement_groups()["PlacementGroups"]] == ["efa"]
    assert inference.client("ec2").describe_placement_groups()["PlacementGroups"] == []
    with pytest.raises(ClientError) as err:
        training.client("ec2", config=NO_RETRY).create_placement_group(GroupName="efa", Strategy="cluster")
    assert err.value.response["Error"]["Code"] == "InvalidPlacementGroup.Duplicate"

"""Server-side fault injection: real wire formats, parsed by boto3 into the codes AWS would send."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gpufleet.infra.errors import GpufleetError

NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


def error_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize(("service", "action", "call", "kind", "expected"), [
    ("ec2", "DescribeInstances", lambda: boto3.client("ec2", config=NO_RETRY).describe_instances(),
     "Throttling", ("RequestLimitExceeded", 503)),
    ("ec2", "DescribeCapacityReservations", lambda: boto3.client("ec2", config=NO_RETRY).describe_capacity_reservations(),
     "InternalError", ("InternalError", 500)),
    ("ec2", "RunInstances", lambda: boto3.client("ec2", config=NO_RETRY).run_instances(
        ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1), "InsufficientInstanceCapacity",
     ("InsufficientInstanceCapacity", 500)),
    ("autoscaling", "DescribeAutoScalingGroups",
     lambda: boto3.client("autoscaling", config=NO_RETRY).describe_auto_scaling_groups(), "Throttling", ("Throttling", 400)),
    ("autoscaling", "DescribeScalingActivities", lambda: boto3.client("autoscaling", config=NO_RETRY).describe_scaling_activities(),
     "InternalError", ("InternalFailure", 500)),
    ("sts", "GetCallerIdentity", lambda: boto3.client("sts", config=NO_RETRY).get_caller_identity(),
     "Throttling", ("Throttling", 400)),
    ("dynamodb", "Scan", lambda: boto3.client("dynamodb", config=NO_RETRY).scan(TableName="gpufleet-rebalance-journal"),
     "Throttling", ("ThrottlingException", 400)),
    ("dynamodb", "PutItem", lambda: boto3.client("dynamodb", config=NO_RETRY).put_item(
        TableName="gpufleet-rebalance-journal", Item={"pk": {"S": "a"}, "sk": {"S": "b"}}),
     "InternalError", ("InternalServerError", 500)),
    ("ram", "GetResourceShares", lambda: boto3.client("ram", config=NO_RETRY).get_resource_shares(resourceOwner="SELF"),
     "Throttling", ("ThrottlingException", 429)),
    ("autoscaling", "DescribeAutoScalingGroups",
     lambda: boto3.client("autoscaling", config=NO_RETRY).describe_auto_scaling_groups(), "ValidationError", ("ValidationError", 400)),
])
def test_injected_faults_parse_as_the_service_error(sandbox, service, action, call, kind, expected):
    sandbox.inject_fault(service, action, kind, count=1)
    assert error_of(call) == expected
    call()  # count=1: the next call goes through
    log = [(r["service"], r["action"], r["status"], r["error"]) for r in sandbox.requests()]
    assert log[0] == (service, action, expected[1], expected[0])
    assert log[1][:2] == (service, action) and log[1][3] is None


def test_a_few_throttles_are_absorbed_by_adaptive_retries(sandbox):
    sandbox.inject_fault("autoscaling", "DescribeAutoScalingGroups", "Throttling", count=2)
    client = boto3.client("autoscaling", config=Config(retries={"mode": "adaptive", "total_max_attempts": 5}))
    reply = client.describe_auto_scaling_groups()
    assert reply["ResponseMetadata"]["RetryAttempts"] == 2
    statuses = [r["status"] for r in sandbox.requests() if r["action"] == "DescribeAutoScalingGroups"]
    assert statuses == [400, 400, 200]


def test_more_throttles_than_attempts_fail_with_the_throttling_code(sandbox):
    sandbox.inject_fault("dynamodb", "GetItem", "Throttling", count=10)
    client = boto3.client("dynamodb", config=Config(retries={"mode": "adaptive", "total_max_attempts": 3}))
    with pytest.raises(ClientError) as err:
        client.get_item(TableName="gpufleet-rebalance-journal", Key={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert sandbox.client.faults()[0]["remaining"] == 7


def test_insufficient_capacity_on_scaling_succeeds_on_the_wire_and_fails_the_launch(sandbox):
    outputs = sandbox.outputs()["stacks"]
    training = outputs["training"]
    sandbox.inject_fault("autoscaling", "SetDesiredCapacity", "InsufficientInstanceCapacity",
                         account=training["accountId"])
    creds = boto3.client("sts").assume_role(RoleArn=training["operatorRoleArn"], RoleSessionName="gpufleet-test",
                                            ExternalId=training["externalId"])["Credentials"]
    asg = boto3.client("autoscaling", aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])
    name = next(g["asgName"] for g in training["nodeGroups"] if g["name"] == "train-h100")
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=6)  # one slot is free, but the launch fails
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    assert (group["DesiredCapacity"], len(group["Instances"])) == (6, 5)
    latest = asg.describe_scaling_activities(AutoScalingGroupName=name)["Activities"][0]
    assert latest["StatusCode"] == "Failed" and "InsufficientInstanceCapacity" in latest["StatusMessage"]


def test_a_fault_scoped_to_an_account_spares_the_others(sandbox):
    outputs = sandbox.outputs()["stacks"]
    sandbox.inject_fault("sts", "GetCallerIdentity", "InternalError", account=outputs["inference"]["accountId"])
    platform = boto3.client("sts", config=NO_RETRY)
    assert platform.get_caller_identity()["Account"] == outputs["platform"]["accountId"]
    creds = platform.assume_role(RoleArn=outputs["inference"]["operatorRoleArn"], RoleSessionName="gpufleet-test",
                                 ExternalId=outputs["inference"]["externalId"])["Credentials"]
    inference = boto3.client("sts", config=NO_RETRY, aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    assert error_of(inference.get_caller_identity) == ("InternalFailure", 500)
    accounts = [(r["action"], r["account"], r["status"]) for r in sandbox.requests()]
    assert accounts == [("GetCallerIdentity", outputs["platform"]["accountId"], 200),
                        ("AssumeRole", outputs["platform"]["accountId"], 200),
                        ("GetCallerIdentity", outputs["inference"]["accountId"], 500)]


def test_bad_fault_specs_are_refused(sandbox):
    with pytest.raises(GpufleetError, match="count"):
        sandbox.inject_fault("ec2", "RunInstances", "Throttling", count=0)
    with pytest.raises(GpufleetError, match="service"):
        sandbox.client._call("POST", "faults", {"action": "RunInstances", "error": "Throttling"})
    assert sandbox.client.faults() == []

"""AWS access per account against the sandbox: assumed roles, endpoints from the environment only,
adaptive retries, and botocore failures turned into gpufleet errors."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import ClientError

from gpufleet.automation.aws import AwsAccess, AwsCallError, AwsClient
from gpufleet.automation.inventory import load_inventory
from gpufleet.infra.errors import BadInputError
from tests.automation.sandbox.deployer import DeployerAccess


def assume_role_calls(sandbox) -> list[str]:
    return [r["account"] for r in sandbox.requests() if r["action"] == "AssumeRole"]


def test_consumer_accounts_are_entered_through_their_operator_role(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = AwsAccess(inv, operation="rb-20261122-0001")
    training = access.client("training", "sts").get_caller_identity()
    assert training["Account"] == inv.stacks["training"].account_id
    assert training["Arn"].endswith(":assumed-role/gpufleet-operator/gpufleet-rb-20261122-0001")
    platform = access.client("platform", "sts").get_caller_identity()
    assert platform["Account"] == inv.stacks["platform"].account_id
    # The production chain: the caller -> the platform's automation role -> the operator role.
    assert platform["Arn"].endswith(":assumed-role/gpufleet-automation/gpufleet-rb-20261122-0001")

    access.client("training", "autoscaling").describe_auto_scaling_groups()
    access.client("training", "ec2").describe_instances()
    assert access.session("training") is access.session("training")
    # Each role once, both assumed from the platform account (the operator role by the automation role).
    assert assume_role_calls(sandbox) == [inv.stacks["platform"].account_id] * 2


def test_assumed_credentials_are_refreshed_before_they_expire(sandbox):
    inv = load_inventory(sandbox.inventory)
    access = AwsAccess(inv, operation="test", role_duration_s=900)  # inside botocore's 15-minute refresh window
    client = access.client("inference", "autoscaling")
    client.describe_auto_scaling_groups()
    client.describe_auto_scaling_groups()
    assert len(assume_role_calls(sandbox)) >= 3  # two to enter (automation, operator role), more only by refreshing


def test_endpoints_come_from_the_standard_variables_per_service(sandbox, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{closed}")
    access = AwsAccess(load_inventory(sandbox.inventory), operation="test", max_attempts=1)
    assert access.client("training", "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    with pytest.raises(AwsCallError) as err:
        access.client("training", "ec2").describe_instances()
    assert "cannot reach the endpoint" in err.value.message
    assert "gpufleet sandbox status" in err.value.hint


def test_throttling_is_retried_adaptively_then_succeeds(sandbox):
    sandbox.inject_fault("autoscaling", "DescribeAutoScalingGroups", "Throttling", count=2)
    access = AwsAccess(load_inventory(sandbox.inventory), operation="test")
    reply = access.client("training", "autoscaling").describe_auto_scaling_groups()
    assert reply["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(reply["AutoScalingGroups"]) == 2


def test_a_persistent_server_error_becomes_an_aws_error_naming_the_call(sandbox):
    inv = load_inventory(sandbox.inventory)
    sandbox.inject_fault("autoscaling", "DescribeAutoScalingGroups", "InternalError", count=5,
                         account=inv.stacks["training"].account_id)
    access = AwsAccess(inv, operation="test", max_attempts=2)
    with pytest.raises(AwsCallError) as err:
        list(access.client("training", "autoscaling").get_paginator("describe_auto_scaling_groups").paginate())
    e = err.value
    assert (e.code, e.aws_code, e.http_status, e.retries, e.stack) == (3, "InternalFailure", 500, 1, "training")
    assert "autoscaling DescribeAutoScalingGroups in training account 222222222222 failed" in e.message
    assert e.hint and "internal error" in e.hint


def test_an_unimplemented_call_is_a_parse_error_with_a_hint(sandbox):
    inventory = load_inventory(sandbox.inventory)
    # As the deployer: the automation role may not call it (IAM answers before the missing action would).
    ec2 = AwsClient(DeployerAccess(sandbox).client("platform", "ec2"), stack="platform",
                    account=inventory.platform, service="ec2")
    with pytest.raises(AwsCallError) as err:
        ec2.describe_instance_topology()
    assert "could not be parsed" in err.value.message
    assert "AWS_ENDPOINT_URL" in err.value.hint


def test_expected_error_codes_pass_through_as_client_errors(sandbox):
    inv = load_inventory(sandbox.inventory)
    ddb = AwsAccess(inv, operation="test").client("platform", "dynamodb",
                                                  passthrough=("ConditionalCheckFailedException",))
    item = {"pk": {"S": "op#x"}, "sk": {"S": "op"}}
    ddb.put_item(TableName=inv.journal_table, Item=item)
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=inv.journal_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_unknown_stacks_and_profiles_are_bad_input_before_any_call(sandbox, monkeypatch):
    inv = load_inventory(sandbox.inventory)
    with pytest.raises(BadInputError, match="no stack 'staging'"):
        AwsAccess(inv).client("staging", "ec2")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(BadInputError, match="profile") as err:
        AwsAccess(inv, profile="no-such-profile").client("platform", "ec2")
    assert err.value.code == 2
    assert sandbox.requests() == []


def test_the_rebalancers_calls_go_through_the_one_translator_and_keep_their_hint(sandbox):
    from gpufleet.automation.rebalance import asg
    from gpufleet.automation.rebalance.journal import JOURNAL_HINT, Journal

    inv = load_inventory(sandbox.inventory)
    access = AwsAccess(inv, operation="test", max_attempts=1)
    sandbox.inject_fault("autoscaling", "SetDesiredCapacity", "InternalError", count=1,
                         account=inv.stacks["training"].account_id)
    with pytest.raises(AwsCallError) as err:  # through an AwsClient: its own hint, then the rebalancer's
        asg.set_desired(access.client("training", "autoscaling"), "gpufleet-training-x", 1, "training/x")
    assert (err.value.aws_code, err.value.code) == ("InternalFailure", 3)
    assert "internal error" in err.value.hint and err.value.hint.endswith(asg.RESUME_HINT)

    raw = access.session("training").client("autoscaling", region_name=inv.stacks["training"].region)
    sandbox.inject_fault("autoscaling", "SetDesiredCapacity", "ValidationError", status=400,
                         message="AutoScalingGroup name not found", account=inv.stacks["training"].account_id)
    with pytest.raises(AwsCallError) as err:  # a plain boto3 client: translated the same way
        asg.set_desired(raw, "gpufleet-training-missing", 1, "training/gpufleet-training-missing")
    assert err.value.aws_code == "ValidationError" and err.value.stack == "training"
    assert "(gpufleet-training-missing)" in err.value.message and err.value.hint == asg.RESUME_HINT

    journal = Journal(access.session("platform").client("dynamodb", region_name=inv.stacks["platform"].region),
                      "no-such-journal-table")
    with pytest.raises(AwsCallError) as err:
        journal.load("rb-1")
    # The automation role may use only the journal table: IAM denies the call to another one.
    assert err.value.aws_code == "AccessDeniedException" and err.value.hint.endswith(f"permissions; {JOURNAL_HINT}")
    assert "dynamodb GetItem" in err.value.message and "journal table no-such-journal-table" in err.value.message

"""KMS key policies as plain dicts. Pure: no pulumi import.

A customer managed key is useless to a service unless its key policy lets that service in; the
account root statement keeps the key administrable through IAM.
"""

from __future__ import annotations

from collections.abc import Sequence

USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


def account_root_statement(partition: str, account_id: str) -> dict[str, object]:
    return {
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }


def logs_statement(region: str, partition: str, account_id: str) -> dict[str, object]:
    """CloudWatch Logs encrypts a log group with a CMK only if the key policy names the service."""
    return {
        "Sid": "CloudWatchLogsUse",
        "Effect": "Allow",
        "Principal": {"Service": f"logs.{region}.amazonaws.com"},
        "Action": USE_ACTIONS,
        "Resource": "*",
        "Condition": {"ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*",
        }},
    }


def autoscaling_statements(partition: str, account_id: str) -> list[dict[str, object]]:
    """Auto Scaling launches instances with its service-linked role, which must use and grant the key
    for encrypted EBS volumes, or every launch fails with Client.InternalError."""
    role = f"arn:{partition}:iam::{account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    return [
        {"Sid": "AutoScalingUse", "Effect": "Allow", "Principal": {"AWS": role},
         "Action": USE_ACTIONS, "Resource": "*"},
        {"Sid": "AutoScalingGrant", "Effect": "Allow", "Principal": {"AWS": role},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}}},
    ]


def key_policy(statements: Sequence[dict[str, object]]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def partition_of(region: str) -> str:
    """The ARN partition of a region."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"

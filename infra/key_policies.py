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


SERVICE_LINKED_ROLE_PATH = ":role/aws-service-role/"
"""Path of every service-linked role; AWS creates them when the service is first used."""


def autoscaling_role_arn(partition: str, account_id: str) -> str:
    return (f"arn:{partition}:iam::{account_id}:role/aws-service-role/autoscaling.amazonaws.com/"
            "AWSServiceRoleForAutoScaling")


def fsx_s3_role_pattern(partition: str, account_id: str) -> str:
    """The FSx S3 service-linked role of any file system of the account (one per file system)."""
    return (f"arn:{partition}:iam::{account_id}:role/aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/"
            "AWSServiceRoleForFSxS3Access_*")


def _service_linked(account_id: str, role_arn: str) -> dict[str, object]:
    # KMS rejects a key policy whose Principal does not exist yet, and in a fresh account the
    # service-linked role appears only when the service is first used (after the key). A condition
    # on aws:PrincipalArn is not resolved at PutKeyPolicy, so the key is created before the role
    # and admits exactly it afterwards.
    return {"StringEquals": {"kms:CallerAccount": account_id}, "ArnLike": {"aws:PrincipalArn": role_arn}}


def autoscaling_statements(partition: str, account_id: str) -> list[dict[str, object]]:
    """Auto Scaling launches instances with its service-linked role, which must use and grant the key
    for encrypted EBS volumes, or every launch fails with Client.InternalError."""
    condition = _service_linked(account_id, autoscaling_role_arn(partition, account_id))
    return [
        {"Sid": "AutoScalingUse", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": USE_ACTIONS, "Resource": "*", "Condition": condition},
        {"Sid": "AutoScalingGrant", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {**condition, "Bool": {"kms:GrantIsForAWSResource": True}}},
    ]


def fsx_data_repository_statement(partition: str, region: str, account_id: str) -> dict[str, object]:
    """A data repository association reads and writes an SSE-KMS bucket as the file system's FSx S3
    service-linked role (AWSServiceRoleForFSxS3Access_<fs-id>, made with the association), through S3."""
    condition = _service_linked(account_id, fsx_s3_role_pattern(partition, account_id))
    condition["StringEquals"] = {**condition["StringEquals"], "kms:ViaService": f"s3.{region}.amazonaws.com"}
    return {"Sid": "FsxDataRepositoryUse", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": USE_ACTIONS, "Resource": "*", "Condition": condition}


def key_policy(statements: Sequence[dict[str, object]]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def partition_of(region: str) -> str:
    """The ARN partition of a region."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"

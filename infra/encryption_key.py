"""A customer managed KMS key with rotation on, and the services allowed to use it."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import kms

from gpufleet.infra import key_policies
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION

__all__ = ["EncryptionKey", "EncryptionKeyArgs", "KeyService"]


class KeyService(enum.StrEnum):
    """AWS services that need a statement in the key policy (IAM alone is not enough for them)."""

    LOGS = "logs"
    AUTOSCALING = "autoscaling"
    FSX_DATA_REPOSITORY = "fsx-data-repository"
    """The FSx S3 service-linked roles, through S3: a data repository association's bucket key."""


@dataclass(frozen=True, kw_only=True)
class EncryptionKeyArgs:
    description: str
    """What the key protects; shown in the KMS console."""
    account_id: str
    """Account that owns and administers the key."""
    region: str
    """Region of the key (log service principals are regional)."""
    services: tuple[KeyService, ...] = ()
    """Services that get a key-policy statement of their own."""

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        if not self.description:
            raise ValueError("description: must not be empty")


class EncryptionKey(pulumi.ComponentResource):
    """``key`` (kms.Key) with rotation on; ``arn`` and ``key_id`` for consumers."""

    def __init__(self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:encryption:EncryptionKey", name, None, opts)
        partition = key_policies.partition_of(args.region)
        statements = [key_policies.account_root_statement(partition, args.account_id)]
        if KeyService.LOGS in args.services:
            statements.append(key_policies.logs_statement(args.region, partition, args.account_id))
        if KeyService.AUTOSCALING in args.services:
            statements += key_policies.autoscaling_statements(partition, args.account_id)
        if KeyService.FSX_DATA_REPOSITORY in args.services:
            statements.append(key_policies.fsx_data_repository_statement(partition, args.region, args.account_id))
        self.key = kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(key_policies.key_policy(statements)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.key.arn
        self.key_id = self.key.key_id
        self.register_outputs({"arn": self.arn})

"""The rebalance journal: a DynamoDB table in the platform account (see DESIGN.md, Rebalance)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
from pulumi_aws import dynamodb

from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs

__all__ = ["RebalanceJournal", "RebalanceJournalArgs", "TABLE_NAME"]

TABLE_NAME = "gpufleet-rebalance-journal"
"""A fixed name: the automation finds the table from the stack outputs, operators from the console."""
TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


@dataclass(frozen=True, kw_only=True)
class RebalanceJournalArgs:
    account_id: str
    """Platform account that owns the table and its key."""
    region: str
    """Region of the table."""
    table_name: str = TABLE_NAME
    """DynamoDB table name."""

    def __post_init__(self) -> None:
        if not TABLE_NAME_PATTERN.match(self.table_name):
            raise ValueError(f"table_name: {self.table_name!r} is not a valid DynamoDB table name")


class RebalanceJournal(pulumi.ComponentResource):
    """Outputs: ``table_name``, ``table_arn``, ``key_arn``. Keys: ``pk`` (partition) and ``sk`` (sort), strings."""

    def __init__(self, name: str, args: RebalanceJournalArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:rebalance:RebalanceJournal", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(f"{name}-key", EncryptionKeyArgs(
            description=f"{name}: rebalance journal", account_id=args.account_id, region=args.region),
            opts=child)
        self.table = dynamodb.Table(
            f"{name}-table",
            name=args.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk",
            range_key="sk",
            attributes=[dynamodb.TableAttributeArgs(name="pk", type="S"),
                        dynamodb.TableAttributeArgs(name="sk", type="S")],
            server_side_encryption=dynamodb.TableServerSideEncryptionArgs(enabled=True, kms_key_arn=key.arn),
            point_in_time_recovery=dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            deletion_protection_enabled=True,
            opts=child,
        )
        self.table_name = self.table.name
        self.table_arn = self.table.arn
        self.key_arn = key.arn
        self.register_outputs({"tableName": self.table_name, "tableArn": self.table_arn})

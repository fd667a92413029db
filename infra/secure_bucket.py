"""An S3 bucket that is private, encrypted and TLS-only by construction: every bucket of the fleet.

SSE-KMS under the caller's customer managed key (bucket key on: one KMS call per object batch, not
per object), versioning, a public access block with all four settings, ownership controls
``BucketOwnerEnforced`` (ACLs off), and a bucket policy that denies plain HTTP, merged with the
statements the caller passes (the log bucket's CloudTrail writes, the release bucket's cross-account
reads). Optionally object lock with a default retention, and server access logs to a target bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import s3

from gpufleet.infra import baseline_policies as policies

__all__ = ["AccessLogTarget", "BucketOrigin", "SecureBucket", "SecureBucketArgs"]

BUCKET_NAME_LENGTH = (3, 63)


def no_statements(bucket_arn: str) -> Sequence[Mapping[str, object]]:
    return ()


@dataclass(frozen=True, kw_only=True)
class AccessLogTarget:
    """Where S3 delivers the bucket's server access logs.

    S3 delivers only to a bucket of the same account and region whose default encryption is SSE-S3
    (not SSE-KMS) and which has no object-lock default retention; its policy must let
    ``logging.s3.amazonaws.com`` put objects under ``prefix``. A SecureBucket is never such a target.
    """

    bucket: pulumi.Input[str]
    """Name of the target bucket."""
    prefix: str
    """Key prefix of the log objects, e.g. ``s3-access/datasets/`` (one per source bucket)."""

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix.startswith("/"):
            raise ValueError(f"access_log.prefix: {self.prefix!r} must be a key prefix, without a leading /")


@dataclass(frozen=True, kw_only=True)
class BucketOrigin:
    """Where a bucket's resources were registered before they moved under a SecureBucket: as
    children of ``parent``, the bucket named like the SecureBucket and each companion
    ``<name>-sse``, ``-versioning``, ``-public-access``, ``-object-lock``. The SecureBucket aliases
    them there, so the engine keeps them instead of replacing them."""

    parent: pulumi.Resource
    """The component that held them."""
    policy_name: str
    """Logical name the bucket policy had."""


@dataclass(frozen=True, kw_only=True)
class SecureBucketArgs:
    kms_key_arn: pulumi.Input[str]
    """Customer managed key of the default encryption (its policy must let the bucket's writers use it)."""
    bucket_name: str | None = None
    """Physical bucket name; None lets Pulumi name it after the logical name plus a random suffix."""
    policy_statements: Callable[[str], Sequence[Mapping[str, object]]] = no_statements
    """Given the bucket's ARN, the policy statements besides the TLS-only deny (which always comes first)."""
    object_lock_retention_days: int | None = None
    """Turn on object lock with this default retention in governance mode (set at creation only)."""
    access_log: AccessLogTarget | None = None
    """Deliver server access logs to this target; None: none (the object-level trail is CloudTrail's)."""
    force_destroy: bool = False
    """Let ``pulumi destroy`` delete a non-empty bucket (only for contents the program itself writes)."""
    moved_from: BucketOrigin | None = None
    """Where the bucket's resources were before they moved here; None for a new bucket."""

    def __post_init__(self) -> None:
        if self.bucket_name is not None:
            low, high = BUCKET_NAME_LENGTH
            if not low <= len(self.bucket_name) <= high or self.bucket_name != self.bucket_name.lower():
                raise ValueError(f"bucket_name: {self.bucket_name!r} must be {low}-{high} lowercase characters")
            if self.access_log is not None and self.access_log.bucket == self.bucket_name:
                raise ValueError(f"access_log.bucket: {self.bucket_name!r} is this bucket; a bucket never logs "
                                 "to itself (every delivery would be logged again)")
        if self.object_lock_retention_days is not None and not 1 <= self.object_lock_retention_days <= 36500:
            raise ValueError(f"object_lock_retention_days: {self.object_lock_retention_days!r} must be 1..36500")


class SecureBucket(pulumi.ComponentResource):
    """Outputs: ``bucket_name``, ``arn``, ``id``; ``bucket`` (the s3.Bucket) and ``policy`` (its
    BucketPolicy, for ``depends_on`` of writers such as CloudTrail)."""

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:storage:SecureBucket", name, None, opts)
        origin = args.moved_from

        def child(earlier_name: str | None = None, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
            aliases = ([pulumi.Alias(name=earlier_name, parent=origin.parent)]
                       if origin is not None and earlier_name is not None else None)
            return pulumi.ResourceOptions(parent=self, aliases=aliases, depends_on=list(depends_on))

        self.bucket = s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=args.force_destroy,
                                object_lock_enabled=True if args.object_lock_retention_days else None,
                                opts=child(name))
        s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=self.bucket.id,
            rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=(
                    s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn)),
                bucket_key_enabled=True)],
            opts=child(f"{name}-sse"))
        s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                            versioning_configuration=s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                            opts=child(f"{name}-versioning"))
        block = s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child(f"{name}-public-access"))
        s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id,
            rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child())
        if args.object_lock_retention_days:
            s3.BucketObjectLockConfiguration(
                f"{name}-object-lock", bucket=self.bucket.id,
                rule=s3.BucketObjectLockConfigurationRuleArgs(
                    default_retention=s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                        mode="GOVERNANCE", days=args.object_lock_retention_days)),
                opts=child(f"{name}-object-lock"))
        self.policy = s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id,
            policy=self.bucket.arn.apply(
                lambda arn: json.dumps(policies.bucket_policy(arn, args.policy_statements(arn)))),
            opts=child(origin.policy_name if origin is not None else None, depends_on=[block]))
        if args.access_log is not None:
            target = args.access_log
            s3.BucketLogging(
                f"{name}-access-log", bucket=self.bucket.id,
                target_bucket=target.bucket,
                target_prefix=target.prefix,
                target_object_key_format=s3.BucketLoggingTargetObjectKeyFormatArgs(
                    partitioned_prefix=s3.BucketLoggingTargetObjectKeyFormatPartitionedPrefixArgs(
                        partition_date_source="EventTime")),
                opts=child())

        self.id = self.bucket.id
        self.arn = self.bucket.arn
        self.bucket_name = self.bucket.bucket
        self.register_outputs({"bucketName": self.bucket_name, "arn": self.arn})


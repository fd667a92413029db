"""What every account of the fleet has before any GPU arrives: keys, an audit trail, encryption by
default, no public S3, and the one door the platform may use (DESIGN.md "Accounts and stacks").

Consumers (training, inference) get the operator role the platform assumes; the platform gets the
automation role that assumes it and the model-release bucket (training writes, inference reads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import cfg, cloudtrail, ebs, iam, kms, s3

from gpufleet.infra import audit_trail, key_policies
from gpufleet.infra import baseline_policies as policies
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.model import Role
from gpufleet.infra.rebalance_journal import TABLE_NAME
from gpufleet.infra.secure_bucket import BucketOrigin, SecureBucket, SecureBucketArgs
from gpufleet.infra.stackfile import ACCOUNT_ID, NAME, REGION
from gpufleet.infra.trail_monitoring import TrailMonitoring, TrailMonitoringArgs

__all__ = ["AUTOMATION_ROLE_NAME", "AccountBaseline", "AccountBaselineArgs", "OPERATOR_ROLE_NAME"]

OPERATOR_ROLE_NAME = "gpufleet-operator"
"""Same name in every consumer account, so the platform's automation policy can name it."""
AUTOMATION_ROLE_NAME = "gpufleet-automation"
LOG_RETENTION_DAYS = 365
"""Object-lock retention of CloudTrail log files (HIPAA asks for six years of documentation; logs
themselves are commonly kept a year online; raise it here)."""


@dataclass(frozen=True, kw_only=True)
class AccountBaselineArgs:
    stack: str
    """Stack name; names the trail and the external id."""
    role: Role
    """platform, training or inference: decides the cross-account pieces."""
    account_id: str
    """The account this baseline is for (the stack's provider must deploy there)."""
    region: str
    """Home region of the trail and keys."""
    automation_role_arn: pulumi.Input[str] | None = None
    """Consumers only: the platform's automation role (its ``automationRoleArn`` export), the one
    principal the operator role trusts."""
    platform_account_id: str | None = None
    """Consumers only: the platform account, when known from config (it fixes the external id);
    otherwise the external id uses the automation role's account at deploy time."""
    node_group_names: tuple[str, ...] = ()
    """Consumers only: node groups the operator role may scale and drain."""
    eks_node_groups: bool = False
    """Consumers only: those node groups are EKS managed node groups (their Auto Scaling groups carry
    EKS's ``eks:nodegroup-name`` tag, not ours)."""
    slurm_head: bool = False
    """Consumers only: the stack runs Slurm, and its head's instance role (``gpufleet-slurm-head``)
    may assume the operator role too (the healer on the head drains and replaces nodes)."""
    enable_ssm_probe: bool = False
    """Consumers only: the operator role may run the health probe on this account's instances
    through SSM (never in an account holding PHI: no SSM there)."""
    consumer_accounts: Mapping[Role, str] = field(default_factory=dict)
    """Platform only: account id per consumer role, for the release bucket and operator roles."""
    enable_config_recorder: bool = False
    """Record resource configuration with AWS Config into the log bucket (one recorder per account
    and region: leave off where the organization already runs one)."""
    log_retention_days: int = LOG_RETENTION_DAYS
    """Object-lock (governance) retention of log files, in days."""

    def __post_init__(self) -> None:
        if not NAME.match(self.stack):
            raise ValueError(f"stack: {self.stack!r} must be lowercase letters, digits and dashes")
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        if self.role is Role.PLATFORM:
            if (self.automation_role_arn is not None or self.node_group_names or self.enable_ssm_probe
                    or self.eks_node_groups or self.slurm_head):
                raise ValueError("automation_role_arn, node_group_names, eks_node_groups, enable_ssm_probe, "
                                 "slurm_head: consumers only")
            for role, account in self.consumer_accounts.items():
                if role is Role.PLATFORM or not ACCOUNT_ID.match(account) or account == self.account_id:
                    raise ValueError(f"consumer_accounts: {role}={account!r} is not another consumer account")
        else:
            if self.automation_role_arn is None:
                raise ValueError("automation_role_arn: None, but a consumer's operator role must trust "
                                 "the platform's automation role")
            if self.consumer_accounts:
                raise ValueError("consumer_accounts: platform only")
        if not 1 <= self.log_retention_days <= 36500:
            raise ValueError(f"log_retention_days: {self.log_retention_days!r} must be 1..36500")


def _event_selectors(log_bucket_arn: str) -> list[cloudtrail.TrailAdvancedEventSelectorArgs]:
    return [cloudtrail.TrailAdvancedEventSelectorArgs(name=s.name, field_selectors=[
        cloudtrail.TrailAdvancedEventSelectorFieldSelectorArgs(
            field=f.field, equals=list(f.equals) or None, starts_withs=list(f.starts_with) or None,
            not_starts_withs=list(f.not_starts_with) or None) for f in s.fields])
        for s in audit_trail.event_selectors(log_bucket_arn)]


class AccountBaseline(pulumi.ComponentResource):
    """Outputs: ``operator_role_arn``/``external_id`` (consumers), ``automation_role_arn`` and
    ``release_bucket`` (platform), ``keys`` (ARN per data class: logs, data, secrets),
    ``security_alarms_topic_arn`` (the CIS alarms on the trail)."""

    def __init__(self, name: str, args: AccountBaselineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:baseline:AccountBaseline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        trail_name = f"gpufleet-{args.stack}"
        trail = policies.trail_arn(partition, args.region, args.account_id, trail_name)

        # One key per data class, so a grant for one never opens another.
        logs_key = kms.Key(
            f"{name}-logs-key", description=f"{args.stack}: CloudTrail, Config and CloudWatch Logs",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=json.dumps(policies.logs_key_policy(partition, args.region, args.account_id, trail,
                                                       args.enable_config_recorder)),
            opts=child)
        data_key = EncryptionKey(f"{name}-data", EncryptionKeyArgs(
            description=f"{args.stack}: EBS volumes by default and data stores", account_id=args.account_id,
            region=args.region, services=(KeyService.AUTOSCALING,)), opts=child)
        secrets_key = EncryptionKey(f"{name}-secrets", EncryptionKeyArgs(
            description=f"{args.stack}: secrets", account_id=args.account_id, region=args.region), opts=child)
        self.keys = {"logs": logs_key.arn, "data": data_key.arn, "secrets": secrets_key.arn}

        s3.AccountPublicAccessBlock(
            f"{name}-s3-public-access", account_id=args.account_id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        ebs.EncryptionByDefault(f"{name}-ebs-encryption", enabled=True, opts=child)
        ebs.DefaultKmsKey(f"{name}-ebs-key", key_arn=data_key.arn, opts=child)

        log_bucket = self._log_bucket(name, args, partition, logs_key, trail)
        trail_logs = TrailMonitoring(f"{name}-trail", TrailMonitoringArgs(
            trail_arn=trail, account_id=args.account_id, region=args.region, logs_key_arn=logs_key.arn), opts=child)
        self.security_alarms_topic_arn = trail_logs.topic_arn
        cloudtrail.Trail(
            f"{name}-trail", name=trail_name, s3_bucket_name=log_bucket.bucket_name,
            is_multi_region_trail=True, include_global_service_events=True, enable_log_file_validation=True,
            kms_key_id=logs_key.arn, cloud_watch_logs_group_arn=trail_logs.log_group_arn,
            cloud_watch_logs_role_arn=trail_logs.role_arn,
            advanced_event_selectors=log_bucket.arn.apply(_event_selectors),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_bucket.policy, *trail_logs.ready]))
        if args.enable_config_recorder:
            self._config_recorder(name, args, partition, log_bucket, logs_key)

        self.operator_role_arn: pulumi.Output[str] | None = None
        self.external_id: pulumi.Output[str] | None = None
        self.automation_role_arn: pulumi.Output[str] | None = None
        self.release_bucket: pulumi.Output[str] | None = None
        self.healer_journal_role_arn: pulumi.Output[str] | None = None
        if args.role is Role.PLATFORM:
            self._platform(name, args, partition, child)
        else:
            self._operator_role(name, args, partition, child)
        self.register_outputs({"operatorRoleArn": self.operator_role_arn, "externalId": self.external_id,
                               "automationRoleArn": self.automation_role_arn,
                               "releaseBucket": self.release_bucket})

    def _healer_journal_role(self, name: str, args: AccountBaselineArgs, partition: str, training: list[str],
                             child: pulumi.ResourceOptions) -> None:
        """The journal, for the training accounts' healers: their Slurm heads' and EKS Deployments'
        roles (never an inference account's)."""
        heads = [policies.role_arn(partition, account, policies.HEAD_ROLE_NAME) for account in sorted(training)]
        pods = [policies.role_arn(partition, account, policies.EKS_HEALER_ROLE_NAME) for account in sorted(training)]
        role = iam.Role(
            f"{name}-healer-journal", name=policies.HEALER_JOURNAL_ROLE_NAME,
            description="gpufleet healer on a training Slurm head: the journal table and its leases, nothing else",
            assume_role_policy=json.dumps(policies.healer_journal_trust(heads + pods)), max_session_duration=3600,
            opts=child)
        iam.RolePolicy(
            f"{name}-healer-journal-policy", role=role.id,
            policy=json.dumps(policies.healer_journal_permissions(partition, args.region, args.account_id,
                                                                  TABLE_NAME)),
            opts=child)
        self.healer_journal_role_arn = role.arn

    def _log_bucket(self, name: str, args: AccountBaselineArgs, partition: str, logs_key: kms.Key,
                    trail: str) -> SecureBucket:
        """The trail's (and Config's) bucket: object-locked, nothing in it may be deleted."""
        return SecureBucket(f"{name}-logs", SecureBucketArgs(
            kms_key_arn=logs_key.arn, object_lock_retention_days=args.log_retention_days,
            policy_statements=lambda arn: policies.log_bucket_statements(
                partition, arn, trail, args.account_id, args.enable_config_recorder),
            moved_from=BucketOrigin(parent=self, policy_name=f"{name}-logs-policy")),
            opts=pulumi.ResourceOptions(parent=self))

    def _config_recorder(self, name: str, args: AccountBaselineArgs, partition: str, bucket: SecureBucket,
                         logs_key: kms.Key) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # The service-linked role exists once Config is first used; AWS creates it on demand.
        service_role = (f"arn:{partition}:iam::{args.account_id}:role/aws-service-role/config.amazonaws.com/"
                        "AWSServiceRoleForConfig")
        recorder = cfg.Recorder(
            f"{name}-config", name=f"gpufleet-{args.stack}", role_arn=service_role,
            recording_group=cfg.RecorderRecordingGroupArgs(all_supported=True,
                                                           include_global_resource_types=True),
            opts=child)
        channel = cfg.DeliveryChannel(
            f"{name}-config-delivery", name=f"gpufleet-{args.stack}", s3_bucket_name=bucket.bucket_name,
            s3_kms_key_arn=logs_key.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[recorder, bucket.policy]))
        cfg.RecorderStatus(f"{name}-config-status", name=recorder.name, is_enabled=True,
                           opts=pulumi.ResourceOptions(parent=self, depends_on=[channel]))

    def _operator_role(self, name: str, args: AccountBaselineArgs, partition: str,
                       child: pulumi.ResourceOptions) -> None:
        automation = pulumi.Output.from_input(args.automation_role_arn)

        def trust(arn: str | None) -> str:
            if not arn:
                raise ValueError(f"{args.stack}: the platform stack exports no automationRoleArn; "
                                 "deploy the platform stack (with its AccountBaseline) first")
            head = policies.role_arn(partition, args.account_id, policies.HEAD_ROLE_NAME) if args.slurm_head else None
            # The healer Deployment runs on training clusters only (eks_healer.py).
            pods = (policies.role_arn(partition, args.account_id, policies.EKS_HEALER_ROLE_NAME)
                    if args.eks_node_groups and args.role is Role.TRAINING else None)
            return json.dumps(policies.operator_trust(arn, external(arn), head, pods))

        def external(arn: str | None) -> str:
            parts = (arn or "").split(":")
            platform_account = args.platform_account_id or (parts[4] if len(parts) > 5 else "")
            return policies.external_id(platform_account, args.account_id, args.stack)

        self.external_id = automation.apply(external)
        role = iam.Role(
            f"{name}-operator", name=OPERATOR_ROLE_NAME,
            description="Assumed by the platform's gpufleet automation to scale and drain this stack's node groups",
            assume_role_policy=automation.apply(trust), max_session_duration=3600, opts=child)
        iam.RolePolicy(
            f"{name}-operator-scale-drain", role=role.id,
            policy=json.dumps(policies.operator_permissions(
                partition, args.region, args.account_id, () if args.eks_node_groups else args.node_group_names,
                eks_node_groups=args.node_group_names if args.eks_node_groups else (),
                enable_ssm_probe=args.enable_ssm_probe)),
            opts=child)
        self.operator_role_arn = role.arn

    def _platform(self, name: str, args: AccountBaselineArgs, partition: str,
                  child: pulumi.ResourceOptions) -> None:
        operators = [policies.role_arn(partition, account, OPERATOR_ROLE_NAME)
                     for account in sorted(args.consumer_accounts.values())]
        automation = iam.Role(
            f"{name}-automation", name=AUTOMATION_ROLE_NAME,
            description="gpufleet automation: reads pools, writes the journal, assumes consumer operator roles",
            assume_role_policy=json.dumps(policies.automation_trust(partition, args.account_id)),
            max_session_duration=3600, opts=child)
        iam.RolePolicy(
            f"{name}-automation-policy", role=automation.id,
            policy=json.dumps(policies.automation_permissions(partition, args.region, args.account_id,
                                                              operators, TABLE_NAME)),
            opts=child)
        self.automation_role_arn = automation.arn

        training = [a for r, a in args.consumer_accounts.items() if r is Role.TRAINING]
        if training:
            self._healer_journal_role(name, args, partition, training, child)
        inference = [a for r, a in args.consumer_accounts.items() if r is Role.INFERENCE]
        release_key = kms.Key(
            f"{name}-release-key", description=f"{args.stack}: model release artifacts",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=json.dumps(policies.release_key_policy(partition, args.account_id, training, inference)),
            opts=child)
        bucket = SecureBucket(f"{name}-releases", SecureBucketArgs(
            kms_key_arn=release_key.arn,
            policy_statements=lambda arn: policies.release_bucket_statements(partition, arn, training, inference),
            moved_from=BucketOrigin(parent=self, policy_name=f"{name}-releases-policy")), opts=child)
        self.release_bucket = bucket.bucket_name

"""The account trail's second destination: a KMS-encrypted CloudWatch Logs group, the CIS metric
filters on it, and their alarms to a KMS-encrypted SNS topic (gpufleet.infra.audit_trail holds the
checks). AccountBaseline passes ``log_group_arn`` and ``role_arn`` to its trail."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, iam, kms, sns

from gpufleet.infra import audit_trail, key_policies
from gpufleet.infra.monitoring import service_use_statement
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION

__all__ = ["TrailMonitoring", "TrailMonitoringArgs"]

CLOUDWATCH_RETENTION_DAYS = 365
"""Days CloudWatch Logs keeps the trail's copy (the S3 copy is the record; this one is for alarms)."""


@dataclass(frozen=True, kw_only=True)
class TrailMonitoringArgs:
    trail_arn: str
    """ARN of the trail that delivers here (known before the trail exists: its name is fixed)."""
    account_id: str
    """The trail's account."""
    region: str
    """The trail's home region."""
    logs_key_arn: pulumi.Input[str]
    """Customer managed key of the log group (its policy must let CloudWatch Logs use it)."""

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        if not self.trail_arn.startswith("arn:") or ":trail/" not in self.trail_arn:
            raise ValueError(f"trail_arn: {self.trail_arn!r} is not a CloudTrail trail ARN")


class TrailMonitoring(pulumi.ComponentResource):
    """Outputs: ``log_group_arn`` (as the trail wants it, ``...:*``), ``role_arn``, ``topic_arn``."""

    def __init__(self, name: str, args: TrailMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:audit:TrailMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        group = cloudwatch.LogGroup(f"{name}-logs", retention_in_days=CLOUDWATCH_RETENTION_DAYS,
                                    kms_key_id=args.logs_key_arn, opts=child)
        role = iam.Role(f"{name}-delivery", description="CloudTrail writes the account trail to CloudWatch Logs",
                        assume_role_policy=json.dumps(audit_trail.trail_logs_trust(args.trail_arn, args.account_id)),
                        opts=child)
        delivery = iam.RolePolicy(
            f"{name}-delivery-policy", role=role.id,
            policy=group.arn.apply(lambda arn: json.dumps(audit_trail.trail_logs_permissions(arn))), opts=child)

        key = kms.Key(f"{name}-alarms-key", description="gpufleet security alarm topic",
                      enable_key_rotation=True, deletion_window_in_days=30,
                      policy=json.dumps(key_policies.key_policy([
                          key_policies.account_root_statement(partition, args.account_id),
                          # CloudWatch publishes alarm state changes to the encrypted topic.
                          service_use_statement("CloudWatchAlarms", "cloudwatch.amazonaws.com", args.account_id),
                      ])), opts=child)
        topic = sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, opts=child)
        for check in audit_trail.CIS_CHECKS:
            slug = check.control.replace(".", "-")
            metric_filter = cloudwatch.LogMetricFilter(
                f"{name}-cis-{slug}", name=f"cis-{check.control}-{check.metric}", log_group_name=group.name,
                pattern=check.pattern,
                metric_transformation=cloudwatch.LogMetricFilterMetricTransformationArgs(
                    name=check.metric, namespace=audit_trail.METRIC_NAMESPACE, value="1"),
                opts=child)
            cloudwatch.MetricAlarm(
                f"{name}-cis-{slug}-alarm", alarm_description=f"CIS {check.control}: {check.description}",
                namespace=audit_trail.METRIC_NAMESPACE, metric_name=check.metric, statistic="Sum", period=300,
                evaluation_periods=1, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching", alarm_actions=[topic.arn],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[metric_filter]))

        self.log_group_arn = group.arn.apply(lambda arn: f"{arn}:*")
        self.role_arn = role.arn
        self.topic_arn = topic.arn
        # The trail checks at creation that it may deliver: the role needs its policy first.
        self.ready: list[pulumi.Resource] = [delivery]
        self.register_outputs({"logGroupArn": self.log_group_arn, "roleArn": self.role_arn,
                               "topicArn": self.topic_arn})

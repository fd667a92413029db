"""Central monitoring in the platform account: Managed Prometheus (remote-written by the consumer
accounts' collectors through one cross-account role), alert rules from monitoring/rules, Alertmanager
to an encrypted SNS topic, and Managed Grafana reading the workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_aws import amp, cloudwatch, grafana, iam, kms, sns

from gpufleet.infra import alert_rules, key_policies
from gpufleet.infra.grafana_content import (
    GrafanaContent,
    GrafanaContentArgs,
    GrafanaProviderFactory,
)
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION

__all__ = ["Monitoring", "MonitoringArgs"]

REMOTE_WRITE_ROLE = "gpufleet-metrics-remote-write"
"""Physical name of the platform role the collectors assume (consumers derive nothing from it:
they read its ARN from the platform stack's ``monitoring`` export)."""
COLLECTOR_ROLE = "gpufleet-metrics-collector"
"""Physical name of the collector role in each consumer account: the only principal trusted."""
QUERY_ACTIONS = ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata",
                 "aps:DescribeWorkspace"]
LIST_ACTIONS = ["aps:ListWorkspaces"]
"""Actions that take no resource ARN (Resource must be "*": the Service Authorization Reference)."""
CLOUDWATCH_READ_ACTIONS = ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"]
"""The CloudWatch data source (capacity reservation metrics); neither action takes a resource."""


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    account_id: str
    """The platform account."""
    region: str
    """Region of the workspace."""
    consumer_account_ids: tuple[str, ...]
    """Accounts whose collectors may remote-write (from ``gpufleet:consumerAccounts``)."""
    rules_dir: Path = alert_rules.RULES_DIR
    """Directory of Prometheus rule files; one rule group namespace per file."""
    enable_grafana: bool = True
    """Create the Managed Grafana workspace (needs IAM Identity Center in the account)."""
    log_retention_days: int = 365
    """Retention of the workspace's rule and alerting log."""
    grafana_provider: GrafanaProviderFactory | None = None
    """Provision the Grafana workspace's data sources and dashboard with this provider factory
    (infra/grafana_content.py); None: the workspace only."""

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        for account in self.consumer_account_ids:
            if not ACCOUNT_ID.match(account):
                raise ValueError(f"consumer_account_ids: {account!r} is not a 12-digit account id")
            if account == self.account_id:
                raise ValueError(f"consumer_account_ids: {account!r} is the platform account itself")


def remote_write_trust_policy(partition: str, consumer_account_ids: tuple[str, ...]) -> dict[str, object]:
    """Only the collector role of each consumer account may assume the remote-write role. The
    principal is the account (a role ARN principal must exist before this policy, and consumers are
    deployed after the platform); the condition pins the role."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ConsumerCollectors",
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in consumer_account_ids]},
        "Action": "sts:AssumeRole",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": [
            f"arn:{partition}:iam::{a}:role/{COLLECTOR_ROLE}" for a in consumer_account_ids]}},
    }]}


def service_use_statement(sid: str, service: str, account_id: str) -> dict[str, object]:
    """Let an AWS service use the key for this account's resources only."""
    return {"Sid": sid, "Effect": "Allow", "Principal": {"Service": service},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}


class Monitoring(pulumi.ComponentResource):
    """Outputs: ``workspace_id``, ``workspace_arn``, ``remote_write_url``, ``remote_write_role_arn``,
    ``alerts_topic_arn``, ``grafana_endpoint`` and ``grafana_workspace_id`` (None without Grafana),
    ``rule_namespaces``."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        rule_files = alert_rules.load_rule_files(args.rules_dir)

        self.key = kms.Key(
            f"{name}-key", description="gpufleet monitoring: metrics, alert topic, workspace logs",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=json.dumps(key_policies.key_policy([
                key_policies.account_root_statement(partition, args.account_id),
                key_policies.logs_statement(args.region, partition, args.account_id),
                # Alertmanager publishes to the encrypted topic as the AMP service.
                service_use_statement("ManagedPrometheusPublish", "aps.amazonaws.com", args.account_id),
            ])), opts=child)
        log_group = cloudwatch.LogGroup(f"{name}-workspace-logs", name="/aws/prometheus/gpufleet",
                                        retention_in_days=args.log_retention_days, kms_key_id=self.key.arn,
                                        opts=child)
        self.workspace = amp.Workspace(
            f"{name}-workspace", alias="gpufleet", kms_key_arn=self.key.arn,
            logging_configuration=amp.WorkspaceLoggingConfigurationArgs(
                log_group_arn=log_group.arn.apply(lambda arn: f"{arn}:*")),
            opts=child)

        self.rule_namespaces = {
            rule_file.namespace: amp.RuleGroupNamespace(
                f"{name}-rules-{rule_file.namespace}", name=rule_file.namespace,
                workspace_id=self.workspace.id, data=rule_file.text, opts=child)
            for rule_file in rule_files
        }

        self.topic = sns.Topic(f"{name}-alerts", kms_master_key_id=self.key.arn, opts=child)
        sns.TopicPolicy(f"{name}-alerts-policy", arn=self.topic.arn, policy=pulumi.Output.all(
            self.topic.arn, self.workspace.arn).apply(lambda a: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Sid": "ManagedPrometheusAlerts", "Effect": "Allow",
                               "Principal": {"Service": "aps.amazonaws.com"},
                               "Action": ["sns:Publish", "sns:GetTopicAttributes"], "Resource": a[0],
                               "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id},
                                             "ArnEquals": {"aws:SourceArn": a[1]}}}]})), opts=child)
        amp.AlertManagerDefinition(
            f"{name}-alertmanager", workspace_id=self.workspace.id,
            definition=self.topic.arn.apply(lambda arn: alert_rules.alertmanager_definition(arn, args.region)),
            opts=child)

        self.remote_write_role = iam.Role(
            f"{name}-remote-write", name=REMOTE_WRITE_ROLE,
            assume_role_policy=json.dumps(remote_write_trust_policy(partition, args.consumer_account_ids)),
            max_session_duration=3600, opts=child)
        iam.RolePolicy(f"{name}-remote-write-policy", role=self.remote_write_role.id,
                       policy=self.workspace.arn.apply(lambda arn: json.dumps({
                           "Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "aps:RemoteWrite", "Resource": arn}]})),
                       opts=child)

        self.grafana_endpoint: pulumi.Output[str] | None = None
        self.grafana_workspace_id: pulumi.Output[str] | None = None
        if args.enable_grafana:
            self.grafana_endpoint = self._grafana(name, args, child)
            self.grafana_workspace_id = self.grafana.id

        self.workspace_id = self.workspace.id
        self.workspace_arn = self.workspace.arn
        self.remote_write_url = self.workspace.prometheus_endpoint.apply(
            lambda url: f"{url.rstrip('/')}/api/v1/remote_write")
        self.remote_write_role_arn = self.remote_write_role.arn
        self.alerts_topic_arn = self.topic.arn
        self.register_outputs({"workspaceId": self.workspace_id, "remoteWriteUrl": self.remote_write_url,
                               "remoteWriteRoleArn": self.remote_write_role_arn,
                               "alertsTopicArn": self.alerts_topic_arn})

    def _grafana(self, name: str, args: MonitoringArgs, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        role = iam.Role(f"{name}-grafana-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"},
                           "Action": "sts:AssumeRole",
                           "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}}]}), opts=child)
        iam.RolePolicy(f"{name}-grafana-policy", role=role.id, policy=pulumi.Output.all(
            self.workspace.arn, self.topic.arn, self.key.arn).apply(lambda a: json.dumps({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": QUERY_ACTIONS, "Resource": a[0]},
                    {"Effect": "Allow", "Action": LIST_ACTIONS, "Resource": "*"},
                    {"Effect": "Allow", "Action": "sns:Publish", "Resource": a[1]},
                    {"Effect": "Allow", "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": a[2]},
                    {"Effect": "Allow", "Action": CLOUDWATCH_READ_ACTIONS, "Resource": "*"},
                ]})), opts=child)
        self.grafana = grafana.Workspace(
            f"{name}-grafana", name="gpufleet", description="gpufleet GPU fleet dashboards",
            account_access_type="CURRENT_ACCOUNT", authentication_providers=["AWS_SSO"],
            permission_type="CUSTOMER_MANAGED", role_arn=role.arn,
            data_sources=["PROMETHEUS", "CLOUDWATCH"], notification_destinations=["SNS"],
            grafana_version="10.4", opts=child)
        if args.grafana_provider is not None:
            self.grafana_content = GrafanaContent(f"{name}-grafana-content", GrafanaContentArgs(
                workspace_id=self.grafana.id, endpoint=self.grafana.endpoint, region=args.region,
                prometheus_endpoint=self.workspace.prometheus_endpoint), args.grafana_provider, opts=child)
        return self.grafana.endpoint

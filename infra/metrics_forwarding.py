"""The consumer account's side of monitoring: the collector role that remote-writes into the
platform's Managed Prometheus (by assuming the platform's remote-write role), and CloudWatch alarms
on the AWS metrics that already exist for this account's resources (FSx capacity, missing nodes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import cloudwatch, eks, iam, kms, sns

from gpufleet.infra import key_policies, metrics_agent
from gpufleet.infra.monitoring import COLLECTOR_ROLE, service_use_statement
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION

__all__ = ["FsxAlarm", "MetricsForwarding", "MetricsForwardingArgs", "NodeGroupAlarm"]

GIB = 1024 ** 3
ALARM_PERIOD_S = 300


@dataclass(frozen=True, kw_only=True)
class NodeGroupAlarm:
    """A GPU node group whose Auto Scaling group should hold its desired nodes."""

    name: str
    """Node group name."""
    asg_name: pulumi.Input[str]
    """Its Auto Scaling group (group metrics collection must be on)."""


@dataclass(frozen=True, kw_only=True)
class HostAlarm:
    """A single instance that must come back by itself (the Slurm head: a fixed address, no group)."""

    name: str
    """Short name in the alarm names, e.g. ``slurm-head``."""
    instance_id: pulumi.Input[str]
    """The instance."""


@dataclass(frozen=True, kw_only=True)
class FsxAlarm:
    """A file system to watch for free capacity."""

    file_system_id: pulumi.Input[str]
    """fs-... id."""
    capacity_gib: int
    """Its storage capacity."""
    min_free_ratio: float = 0.10
    """Alarm below this share of free capacity."""

    def __post_init__(self) -> None:
        if not 0 < self.min_free_ratio < 1:
            raise ValueError(f"min_free_ratio: {self.min_free_ratio!r} must lie between 0 and 1")

    @property
    def threshold_bytes(self) -> float:
        return self.capacity_gib * GIB * self.min_free_ratio


@dataclass(frozen=True, kw_only=True)
class MetricsForwardingArgs:
    account_id: str
    """The consumer account."""
    region: str
    """Its region."""
    remote_write_role_arn: pulumi.Input[str]
    """The platform's remote-write role (platform stack export ``monitoring.remoteWriteRoleArn``)."""
    node_groups: Sequence[NodeGroupAlarm] = field(default_factory=tuple)
    """GPU node groups to alarm on when nodes are missing."""
    hosts: Sequence[HostAlarm] = field(default_factory=tuple)
    """Instances recovered on a failed system check; a failed instance check pages the topic."""
    fsx: FsxAlarm | None = None
    """The training file system, if any."""
    eks_cluster_name: pulumi.Input[str] | None = None
    """EKS cluster whose collector service account gets the collector role (Pod Identity)."""
    collector_principal_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    """Roles of this account that run a collector and assume the collector role (the Slurm head's)."""

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")


def collector_trust_policy(account_id: str, principal_arns: Sequence[str]) -> dict[str, object]:
    """EKS pods (Pod Identity), an instance with the collector's profile, and the roles of this
    account that run a collector (the Slurm head's instance role chains into it: the platform's
    remote-write role trusts only this role's name)."""
    statements: list[dict[str, object]] = [
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
         "Action": ["sts:AssumeRole", "sts:TagSession"],
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
    ]
    if principal_arns:
        statements.append({"Sid": "CollectorHosts", "Effect": "Allow", "Principal": {"AWS": sorted(principal_arns)},
                           "Action": "sts:AssumeRole"})
    return {"Version": "2012-10-17", "Statement": statements}


class MetricsForwarding(pulumi.ComponentResource):
    """Outputs: ``collector_role_arn``, ``collector_instance_profile`` (Slurm head node),
    ``alarms_topic_arn``, ``alarm_names``."""

    def __init__(self, name: str, args: MetricsForwardingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:monitoring:MetricsForwarding", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        # EKS pods get it through Pod Identity; a Slurm head node through its instance profile.
        self.collector_role = iam.Role(
            f"{name}-collector", name=COLLECTOR_ROLE,
            assume_role_policy=pulumi.Output.all(*args.collector_principal_arns).apply(
                lambda arns: json.dumps(collector_trust_policy(args.account_id, arns))), opts=child)
        iam.RolePolicy(f"{name}-collector-policy", role=self.collector_role.id,
                       policy=pulumi.Output.from_input(args.remote_write_role_arn).apply(lambda arn: json.dumps({
                           "Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": arn}]})),
                       opts=child)
        self.collector_instance_profile = iam.InstanceProfile(
            f"{name}-collector-profile", role=self.collector_role.name, opts=child)
        if args.eks_cluster_name is not None:
            eks.PodIdentityAssociation(
                f"{name}-collector-identity", cluster_name=args.eks_cluster_name,
                namespace=metrics_agent.COLLECTOR_NAMESPACE,
                service_account=metrics_agent.COLLECTOR_SERVICE_ACCOUNT,
                role_arn=self.collector_role.arn, opts=child)

        key = kms.Key(f"{name}-alarms-key", description="gpufleet CloudWatch alarm topic",
                      enable_key_rotation=True, deletion_window_in_days=30,
                      policy=json.dumps(key_policies.key_policy([
                          key_policies.account_root_statement(partition, args.account_id),
                          # CloudWatch publishes alarm state changes to the encrypted topic.
                          service_use_statement("CloudWatchAlarms", "cloudwatch.amazonaws.com", args.account_id),
                      ])), opts=child)
        self.topic = sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, opts=child)
        alarms: list[cloudwatch.MetricAlarm] = []
        for group in args.node_groups:
            alarms.append(self._missing_nodes_alarm(name, group, child))
        if args.fsx is not None:
            alarms.append(self._fsx_alarm(name, args.fsx, child))
        for host in args.hosts:
            alarms += self._host_alarms(name, host, key_policies.partition_of(args.region), args.region, child)

        self.collector_role_arn = self.collector_role.arn
        self.alarms_topic_arn = self.topic.arn
        self.alarm_names = [a.name for a in alarms]
        self.register_outputs({"collectorRoleArn": self.collector_role_arn, "alarmsTopicArn": self.alarms_topic_arn})

    def _missing_nodes_alarm(self, name: str, group: NodeGroupAlarm,
                             child: pulumi.ResourceOptions) -> cloudwatch.MetricAlarm:
        def asg_metric(metric_id: str, metric: str) -> cloudwatch.MetricAlarmMetricQueryArgs:
            return cloudwatch.MetricAlarmMetricQueryArgs(id=metric_id, metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace="AWS/AutoScaling", metric_name=metric, period=ALARM_PERIOD_S, stat="Minimum",
                dimensions={"AutoScalingGroupName": group.asg_name}))

        return cloudwatch.MetricAlarm(
            f"{name}-{group.name}-missing-nodes",
            alarm_description=f"{group.name}: fewer nodes in service than desired for 15 minutes "
                              "(capacity not delivered, or nodes failing to launch)",
            metric_queries=[
                asg_metric("desired", "GroupDesiredCapacity"),
                asg_metric("inservice", "GroupInServiceInstances"),
                cloudwatch.MetricAlarmMetricQueryArgs(id="missing", expression="desired - inservice",
                                                      label="Nodes missing", return_data=True),
            ],
            comparison_operator="GreaterThanThreshold", threshold=0, evaluation_periods=3,
            datapoints_to_alarm=3, treat_missing_data="missing",
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], opts=child)

    def _host_alarms(self, name: str, host: HostAlarm, partition: str, region: str,
                     child: pulumi.ResourceOptions) -> list[cloudwatch.MetricAlarm]:
        """A failed system check (the host under the instance) recovers the instance onto new
        hardware, keeping its id, private address and volumes; a failed instance check (the OS)
        needs a person: both page the topic."""
        def check(kind: str, actions: list[pulumi.Input[str]], periods: int) -> cloudwatch.MetricAlarm:
            return cloudwatch.MetricAlarm(
                f"{name}-{host.name}-{kind.lower()}-check",
                alarm_description=f"{host.name}: EC2 {kind.lower()} status check failing",
                namespace="AWS/EC2", metric_name=f"StatusCheckFailed_{kind}",
                dimensions={"InstanceId": host.instance_id}, statistic="Maximum", period=60,
                evaluation_periods=periods, datapoints_to_alarm=periods, threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="missing",
                alarm_actions=actions, ok_actions=[self.topic.arn], opts=child)

        recover = f"arn:{partition}:automate:{region}:ec2:recover"
        return [check("System", [recover, self.topic.arn], 2), check("Instance", [self.topic.arn], 3)]

    def _fsx_alarm(self, name: str, fsx: FsxAlarm, child: pulumi.ResourceOptions) -> cloudwatch.MetricAlarm:
        return cloudwatch.MetricAlarm(
            f"{name}-fsx-free-capacity",
            alarm_description=f"FSx for Lustre below {fsx.min_free_ratio:.0%} free capacity",
            namespace="AWS/FSx", metric_name="FreeDataStorageCapacity",
            dimensions={"FileSystemId": fsx.file_system_id}, statistic="Minimum", period=ALARM_PERIOD_S,
            comparison_operator="LessThanThreshold", threshold=fsx.threshold_bytes, evaluation_periods=3,
            treat_missing_data="breaching", alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            opts=child)

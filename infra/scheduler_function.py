"""The scheduler in the platform account: a Lambda function running one reconcile pass, invoked
every minute by EventBridge Scheduler (docs/schedule.md, "Deployed as a Lambda function").

Two passes never run at once: reserved concurrency 1 (the pool's lease is the second guard). A
missed minute is not retried (retry policy 0, event age 60 s): the next minute's pass is the retry.
What the scheduler could not deliver goes to an encrypted dead-letter queue; errors and that queue
alarm to the monitoring topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, iam, lambda_, scheduler, sqs

from gpufleet.infra import key_policies
from gpufleet.infra.account_baseline import AUTOMATION_ROLE_NAME, OPERATOR_ROLE_NAME
from gpufleet.infra.baseline_policies import role_arn
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.scheduler_archive import HANDLER, archive_files

__all__ = ["FUNCTION_NAME", "SchedulerFunction", "SchedulerFunctionArgs"]

FUNCTION_NAME = "gpufleet-scheduler"
TIMEOUT_S = 55
"""Under the minute between passes (a pass advances moves without waiting)."""


@dataclass(frozen=True, kw_only=True)
class SchedulerFunctionArgs:
    account_id: str
    """Platform account of the function."""
    region: str
    """Region of the function and its schedule."""
    consumer_account_ids: Sequence[str]
    """Accounts whose operator role (``gpufleet-operator``) the pass assumes."""
    journal_table_arn: pulumi.Input[str]
    """The rebalance journal."""
    journal_key_arn: pulumi.Input[str]
    """The journal's KMS key."""
    alarm_topic_arn: pulumi.Input[str]
    """The monitoring topic."""
    fleet_files: Mapping[str, str]
    """Under ``fleet/`` in the archive: ``stacks/Pulumi.<platform>.yaml`` and ``inventory.json``."""
    log_retention_days: int = 90
    """Retention of the function's log group."""


class SchedulerFunction(pulumi.ComponentResource):
    """Outputs: ``function_name``, ``function_arn``, ``dead_letter_queue_url``, ``log_group_name``."""

    def __init__(self, name: str, args: SchedulerFunctionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:schedule:SchedulerFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        key = EncryptionKey(f"{name}-logs-key", EncryptionKeyArgs(
            description=f"{name}: scheduler function logs", account_id=args.account_id, region=args.region,
            services=(KeyService.LOGS,)), opts=child)
        self.log_group = cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{FUNCTION_NAME}",
                                             retention_in_days=args.log_retention_days, kms_key_id=key.arn,
                                             opts=child)
        role = iam.Role(f"{name}-role", name=FUNCTION_NAME, description="gpufleet scheduler: one reconcile pass",
                        assume_role_policy=json.dumps(_trust("lambda.amazonaws.com", args.account_id)),
                        max_session_duration=3600, opts=child)
        assumable = sorted([role_arn(partition, args.account_id, AUTOMATION_ROLE_NAME),
                            *(role_arn(partition, a, OPERATOR_ROLE_NAME) for a in sorted(set(args.consumer_account_ids)))])
        role_policy = iam.RolePolicy(f"{name}-policy", role=role.id, policy=pulumi.Output.all(
            self.log_group.arn, args.journal_table_arn, args.journal_key_arn).apply(
            lambda a: json.dumps(_function_permissions(a[0], assumable, a[1], a[2]))), opts=child)
        code = pulumi.AssetArchive({path: pulumi.StringAsset(text)
                                    for path, text in archive_files(args.fleet_files).items()})
        self.function = lambda_.Function(
            f"{name}-function", name=FUNCTION_NAME, role=role.arn, runtime="python3.12", handler=HANDLER,
            code=code, timeout=TIMEOUT_S, memory_size=512, reserved_concurrent_executions=1,
            logging_config=lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, self.log_group]))
        # A throttled or failed invocation is dropped, not retried for hours: the next pass redoes it.
        lambda_.FunctionEventInvokeConfig(f"{name}-async", function_name=self.function.name,
                                          maximum_retry_attempts=0, maximum_event_age_in_seconds=60, opts=child)
        self.dead_letter_queue = sqs.Queue(f"{name}-dlq", name=f"{FUNCTION_NAME}-dlq", sqs_managed_sse_enabled=True,
                                           message_retention_seconds=14 * 24 * 3600, opts=child)
        invoker = iam.Role(f"{name}-invoker", name=f"{FUNCTION_NAME}-invoker",
                           description="EventBridge Scheduler: invokes the gpufleet scheduler",
                           assume_role_policy=json.dumps(_trust("scheduler.amazonaws.com", args.account_id)),
                           max_session_duration=3600, opts=child)
        invoker_policy = iam.RolePolicy(f"{name}-invoker-policy", role=invoker.id, policy=pulumi.Output.all(
            self.function.arn, self.dead_letter_queue.arn).apply(lambda a: json.dumps(_invoker_permissions(a[0], a[1]))),
            opts=child)
        self.schedule = scheduler.Schedule(
            f"{name}-schedule", name=FUNCTION_NAME, schedule_expression="rate(1 minute)",
            flexible_time_window=scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=scheduler.ScheduleTargetArgs(
                arn=self.function.arn, role_arn=invoker.arn, input=json.dumps({}),
                retry_policy=scheduler.ScheduleTargetRetryPolicyArgs(maximum_retry_attempts=0,
                                                                     maximum_event_age_in_seconds=60),
                dead_letter_config=scheduler.ScheduleTargetDeadLetterConfigArgs(arn=self.dead_letter_queue.arn)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoker_policy]))
        self.errors_alarm = cloudwatch.MetricAlarm(
            f"{name}-errors", name=f"{FUNCTION_NAME}-errors",
            alarm_description="the scheduler's reconcile pass failed (see its log group)",
            namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": self.function.name},
            statistic="Sum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn],
            opts=child)
        self.dlq_alarm = cloudwatch.MetricAlarm(
            f"{name}-dlq-messages", name=f"{FUNCTION_NAME}-dlq-messages",
            alarm_description="EventBridge Scheduler could not invoke the scheduler function (see its dead-letter queue)",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dead_letter_queue.name}, statistic="Maximum", period=300,
            evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn],
            opts=child)
        self.function_name = self.function.name
        self.function_arn = self.function.arn
        self.dead_letter_queue_url = self.dead_letter_queue.url
        self.log_group_name = self.log_group.name
        self.register_outputs({"functionName": self.function_name, "deadLetterQueueUrl": self.dead_letter_queue_url})


def _trust(service: str, account_id: str) -> dict:
    """The service may assume the role for this account's resources only (confused deputy)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}]}


def _function_permissions(log_group_arn: str, assumable: Sequence[str], table_arn: str, key_arn: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [f"{log_group_arn}:log-stream:*"]},
        {"Sid": "AssumeFleetRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": list(assumable)},
        {"Sid": "Journal", "Effect": "Allow",
         "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query", "dynamodb:Scan", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"],
         "Resource": [table_arn]},
        {"Sid": "JournalKey", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"], "Resource": [key_arn]},
    ]}


def _invoker_permissions(function_arn: str, queue_arn: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeScheduler", "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [function_arn]},
        {"Sid": "DeadLetter", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": [queue_arn]},
    ]}

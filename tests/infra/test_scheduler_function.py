"""The scheduler function in the rendered platform stack (mock runtime): one pass at a time, every
minute, no retry, a dead-letter queue and alarms to the monitoring topic, and a role that reaches
its logs, the fleet's roles and the journal only. Its archive is the handler's module closure."""

from __future__ import annotations

import json

import pytest
import yaml

from gpufleet.infra import stackfile
from gpufleet.infra.account_baseline import AUTOMATION_ROLE_NAME, OPERATOR_ROLE_NAME
from gpufleet.infra.program import scheduler_fleet_files
from gpufleet.infra.rendered import RenderedStack
from gpufleet.infra.scheduler_archive import HANDLER, HANDLER_MODULE, module_closure
from gpufleet.infra.scheduler_function import FUNCTION_NAME

FUNCTION = "aws:lambda/function:Function"


@pytest.fixture(scope="module")
def platform(rendered_fleet) -> RenderedStack:
    return rendered_fleet["platform"]


def one(stack: RenderedStack, type_token: str, suffix: str):
    found = [r for r in stack.of_type(type_token) if r.urn.endswith(f"::scheduler-{suffix}")]
    assert len(found) == 1, (type_token, suffix, [r.urn for r in stack.of_type(type_token)])
    return found[0]


def test_the_function_runs_one_pass_at_a_time_with_the_handler_of_the_archive(platform) -> None:
    fn = one(platform, FUNCTION, "function").inputs
    assert (fn["runtime"], fn["handler"], fn["reservedConcurrentExecutions"]) == ("python3.12", HANDLER, 1)
    assert fn["timeout"] < 60 and fn["loggingConfig"]["logGroup"] == f"/aws/lambda/{FUNCTION_NAME}"
    packaged = set(fn["code"]["archive"])
    assert {"gpufleet/automation/schedule/lambda_handler.py", "gpufleet/automation/schedule/reconcile.py",
            "gpufleet/infra/errors.py", "yaml/__init__.py", "fleet/stacks/Pulumi.platform.yaml"} <= packaged
    assert not any(p.startswith(("gpufleet/automation/cli/", "gpufleet/infra/offline/")) for p in packaged), packaged
    invoke = one(platform, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "async").inputs
    assert (invoke["maximumRetryAttempts"], invoke["maximumEventAgeInSeconds"]) == (0, 60)
    logs = one(platform, "aws:cloudwatch/logGroup:LogGroup", "logs").inputs
    assert logs["name"] == f"/aws/lambda/{FUNCTION_NAME}" and logs["kmsKeyId"].startswith("arn:aws:kms:")


def test_every_minute_without_a_window_or_a_retry_into_a_dead_letter_queue(platform) -> None:
    schedule = one(platform, "aws:scheduler/schedule:Schedule", "schedule").inputs
    target = schedule["target"]
    if isinstance(target, str):  # the mock runtime hands nested inputs of unknown shape as their repr
        target = yaml.safe_load(target)
    function_arn = one(platform, FUNCTION, "function").outputs["arn"]
    queue = one(platform, "aws:sqs/queue:Queue", "dlq")
    assert schedule["scheduleExpression"] == "rate(1 minute)" and schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    assert target["arn"] == function_arn and target["retryPolicy"]["maximumRetryAttempts"] == 0
    assert target["deadLetterConfig"]["arn"] == queue.outputs["arn"] and queue.inputs["sqsManagedSseEnabled"] is True
    invoker = one(platform, "aws:iam/role:Role", "invoker")
    assert target["roleArn"] == invoker.outputs["arn"]
    policy = json.loads(one(platform, "aws:iam/rolePolicy:RolePolicy", "invoker-policy").inputs["policy"])
    assert {(s["Action"], tuple(s["Resource"])) for s in policy["Statement"]} == {
        ("lambda:InvokeFunction", (function_arn,)), ("sqs:SendMessage", (queue.outputs["arn"],))}


def test_errors_and_dead_letters_alarm_to_the_monitoring_topic(platform) -> None:
    topic = platform.exports["monitoring"]["alertsTopicArn"]
    errors = one(platform, "aws:cloudwatch/metricAlarm:MetricAlarm", "errors").inputs
    dlq = one(platform, "aws:cloudwatch/metricAlarm:MetricAlarm", "dlq-messages").inputs
    assert (errors["namespace"], errors["metricName"], errors["dimensions"]) == (
        "AWS/Lambda", "Errors", {"FunctionName": FUNCTION_NAME})
    assert (dlq["namespace"], dlq["metricName"], dlq["dimensions"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": f"{FUNCTION_NAME}-dlq"})
    for alarm in (errors, dlq):
        assert alarm["alarmActions"] == [topic] and alarm["threshold"] == 0, alarm


def test_the_role_reaches_its_logs_the_fleet_roles_and_the_journal_only(platform) -> None:
    spec = platform.spec
    policy = json.loads(one(platform, "aws:iam/rolePolicy:RolePolicy", "policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"WriteOwnLogs", "AssumeFleetRoles", "Journal", "JournalKey"}
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Action"]) for s in by_sid.values())
    assert by_sid["AssumeFleetRoles"]["Resource"] == sorted(
        [f"arn:aws:iam::{spec.account_id}:role/{AUTOMATION_ROLE_NAME}",
         *(f"arn:aws:iam::{a}:role/{OPERATOR_ROLE_NAME}" for a in sorted(spec.consumer_accounts.values()))])
    table = platform.of_type("aws:dynamodb/table:Table")[0].outputs["arn"]
    assert by_sid["Journal"]["Resource"] == [table]
    journal_key = [r for r in platform.of_type("aws:kms/key:Key") if "rebalance-journal" in r.urn][0]
    assert by_sid["JournalKey"]["Resource"] == [journal_key.outputs["arn"]]
    assert by_sid["WriteOwnLogs"]["Resource"] == [
        f"arn:aws:logs:{spec.region}:{spec.account_id}:log-group:/aws/lambda/{FUNCTION_NAME}:log-stream:*"]


def test_only_a_platform_with_a_schedule_gets_the_function(rendered_fleet) -> None:
    for name, stack in rendered_fleet.items():
        assert bool(stack.of_type(FUNCTION)) == (stack.spec.role.value == "platform" and bool(stack.spec.schedule)), name


def test_the_packaged_stack_file_is_the_validated_platform_and_the_inventory_is_the_collected_one(
        platform, tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: gpufleet\nruntime: python\n")
    (tmp_path / ".gpufleet").mkdir()
    (tmp_path / ".gpufleet" / "inventory.json").write_text('{"version": 1}\n')
    files = scheduler_fleet_files(platform.spec, root=tmp_path)
    assert files["inventory.json"] == '{"version": 1}\n'
    packaged = tmp_path / "Pulumi.platform.yaml"
    packaged.write_text(files["stacks/Pulumi.platform.yaml"])
    again = stackfile.load_stack(packaged)
    assert (again.schedule, again.pools, again.consumer_accounts) == (
        platform.spec.schedule, platform.spec.pools, platform.spec.consumer_accounts)
    assert HANDLER_MODULE in module_closure() and not any(m.split(".")[1] not in {"automation", "infra", "lifecycle"}
                                                         for m in module_closure())

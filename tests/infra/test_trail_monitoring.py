"""The account trail under mocks: S3 data events for every bucket, CloudWatch Logs under the logs
CMK, and the CIS metric filters each alarmed to an encrypted topic."""

from __future__ import annotations

import json

from gpufleet.infra.account_baseline import AccountBaseline, AccountBaselineArgs
from gpufleet.infra.audit_trail import CIS_CHECKS, METRIC_NAMESPACE
from gpufleet.infra.model import Role

TRAINING, PLATFORM = "222222222222", "111111111111"


def baseline() -> AccountBaseline:
    return AccountBaseline("baseline", AccountBaselineArgs(
        stack="training", role=Role.TRAINING, account_id=TRAINING, region="us-east-1",
        automation_role_arn=f"arn:aws:iam::{PLATFORM}:role/gpufleet-automation", node_group_names=("train-h100",)))


def one(mock_runtime, type_token: str, name_part: str = "") -> dict:
    [found] = [r for r in mock_runtime.registered(type_token) if name_part in r["name"]]
    return found


def test_trail_records_object_access_of_every_bucket_and_reads_of_its_own(mock_runtime):
    mock_runtime.settle(baseline().security_alarms_topic_arn)
    trail = one(mock_runtime, "aws:cloudtrail/trail:Trail")["inputs"]
    log_bucket = one(mock_runtime, "aws:s3/bucket:Bucket", "logs")["outputs"]["bucket"]
    selectors = {s["name"]: {f["field"]: f for f in s["fieldSelectors"]} for s in trail["advancedEventSelectors"]}
    management, others, own = selectors.values()
    assert management == {"eventCategory": {"field": "eventCategory", "equals": ["Management"]}}
    assert others["resources.type"]["equals"] == ["AWS::S3::Object"]
    assert others["resources.ARN"]["notStartsWiths"] == [f"arn:aws:s3:::{log_bucket}/"]
    assert "readOnly" not in others
    assert own["resources.ARN"]["startsWiths"] == [f"arn:aws:s3:::{log_bucket}/"]
    assert own["readOnly"]["equals"] == ["true"]


def test_trail_delivers_to_an_encrypted_log_group_through_its_own_role(mock_runtime):
    b = baseline()
    logs_key = mock_runtime.settle(b.keys["logs"])
    trail = one(mock_runtime, "aws:cloudtrail/trail:Trail")
    group = one(mock_runtime, "aws:cloudwatch/logGroup:LogGroup", "trail")
    assert group["inputs"]["kmsKeyId"] == logs_key
    assert trail["inputs"]["cloudWatchLogsGroupArn"] == group["outputs"]["arn"] + ":*"
    role = one(mock_runtime, "aws:iam/role:Role", "trail-delivery")
    assert trail["inputs"]["cloudWatchLogsRoleArn"] == role["outputs"]["arn"]
    [statement] = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceArn"] == (
        f"arn:aws:cloudtrail:us-east-1:{TRAINING}:trail/gpufleet-training")
    policy = json.loads(one(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "trail-delivery")["inputs"]["policy"])
    assert policy["Statement"][0]["Resource"] == group["outputs"]["arn"] + ":log-stream:*"
    key_policy = json.loads(one(mock_runtime, "aws:kms/key:Key", "logs-key")["inputs"]["policy"])
    logs = next(s for s in key_policy["Statement"] if s["Sid"] == "CloudWatchLogsUse")
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(":log-group:*")
    # CloudTrail tries the role when the trail is created: its policy must exist by then.
    delivery_policy = one(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "trail-delivery")["urn"]
    assert delivery_policy in trail["dependencies"]


def test_every_cis_check_has_a_filter_on_the_trail_group_and_an_alarm_to_the_encrypted_topic(mock_runtime):
    topic_arn = mock_runtime.settle(baseline().security_alarms_topic_arn)
    group = one(mock_runtime, "aws:cloudwatch/logGroup:LogGroup", "trail")["outputs"]["name"]
    filters = {f["inputs"]["metricTransformation"]["name"]: f["inputs"]
               for f in mock_runtime.registered("aws:cloudwatch/logMetricFilter:LogMetricFilter")}
    alarms = {a["inputs"]["metricName"]: a["inputs"] for a in mock_runtime.registered(
        "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert sorted(filters) == sorted(c.metric for c in CIS_CHECKS) == sorted(alarms)
    for check in CIS_CHECKS:
        f = filters[check.metric]
        assert f["logGroupName"] == group and f["pattern"] == check.pattern
        assert f["metricTransformation"]["namespace"] == METRIC_NAMESPACE
        assert all(term in f["pattern"] for term in check.terms), check.control
        alarm = alarms[check.metric]
        assert alarm["alarmActions"] == [topic_arn] and alarm["namespace"] == METRIC_NAMESPACE
        assert alarm["threshold"] == 1 and alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    topic = one(mock_runtime, "aws:sns/topic:Topic", "trail-alarms")["inputs"]
    key = one(mock_runtime, "aws:kms/key:Key", "trail-alarms-key")
    assert topic["kmsMasterKeyId"] == key["outputs"]["arn"]
    services = [s["Principal"] for s in json.loads(key["inputs"]["policy"])["Statement"] if "Service" in s["Principal"]]
    assert services == [{"Service": "cloudwatch.amazonaws.com"}]

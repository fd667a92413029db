"""Monitoring (platform) and MetricsForwarding (consumers) under the mock runtime and in the
rendered reference fleet: workspace under a CMK, rule namespaces from the repo's files, Alertmanager
to an encrypted topic, remote-write trust limited to the consumers' collector roles, alarms."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from gpufleet.infra import alert_rules
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.monitoring import COLLECTOR_ROLE, REMOTE_WRITE_ROLE, Monitoring, MonitoringArgs

PLATFORM = "111111111111"
CONSUMERS = ("222222222222", "333333333333")


def test_workspace_is_encrypted_and_remote_write_url_follows_its_endpoint(mock_runtime):
    monitoring = Monitoring("monitoring", MonitoringArgs(account_id=PLATFORM, region="us-east-1",
                                                         consumer_account_ids=CONSUMERS))

    def check(values):
        urn, kms_key_arn, endpoint, url = values
        assert kms_key_arn and kms_key_arn.startswith("arn:aws:kms:"), urn
        assert url == f"{endpoint.rstrip('/')}/api/v1/remote_write", urn
        return True

    ws = monitoring.workspace
    assert mock_runtime.settle(pulumi.Output.all(ws.urn, ws.kms_key_arn, ws.prometheus_endpoint,
                                                 monitoring.remote_write_url).apply(check))


def test_one_rule_namespace_per_rule_file_with_the_file_as_written(mock_runtime):
    monitoring = Monitoring("monitoring", MonitoringArgs(account_id=PLATFORM, region="us-east-1",
                                                         consumer_account_ids=CONSUMERS))
    mock_runtime.settle(monitoring.workspace_id)
    files = {f.namespace: f for f in alert_rules.load_rule_files()}
    registered = {r["inputs"]["name"]: r for r in mock_runtime.registered("aws:amp/ruleGroupNamespace:RuleGroupNamespace")}
    assert set(registered) == set(files) >= {"gpu", "node", "storage", "efa"}
    for name, registration in registered.items():
        assert registration["inputs"]["data"] == files[name].text, registration["urn"]


def test_rule_files_cover_the_faults_the_fleet_pages_on():
    alerts = {a for f in alert_rules.load_rule_files() for a in f.alerts}
    assert {"GpuXidCritical", "GpuEccDoubleBitError", "GpuThermalThrottling", "GpuPowerThrottling",
            "GpuUtilisationLow", "KubeNodeNotReady", "FsxFreeCapacityLow", "EfaPacketDrops",
            "GpuHealthCheckFailed"} <= alerts


def test_a_rule_without_severity_or_with_a_duplicate_name_is_refused(tmp_path: Path):
    rule = {"alert": "X", "expr": "up == 0", "labels": {}, "annotations": {"summary": "s"}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    with pytest.raises(ConfigError) as err:
        alert_rules.load_rule_files(tmp_path)
    assert "a.yaml" in str(err.value) and "groups[0].rules[0].labels.severity" in str(err.value)
    rule["labels"] = {"severity": "critical"}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"groups": [{"name": "h", "rules": [rule]}]}))
    with pytest.raises(ConfigError, match="also defined in"):
        alert_rules.load_rule_files(tmp_path)


def test_monitoring_args_refuse_the_platform_as_its_own_consumer():
    with pytest.raises(ValueError, match="consumer_account_ids"):
        MonitoringArgs(account_id=PLATFORM, region="us-east-1", consumer_account_ids=(PLATFORM,))


# -- the rendered fleet ------------------------------------------------------------------------

def test_platform_alertmanager_sends_to_a_cmk_encrypted_topic_aps_may_publish_to(rendered_fleet):
    stack = rendered_fleet["platform"]
    [topic] = [t for t in stack.of_type("aws:sns/topic:Topic") if t.name == "monitoring-alerts"]
    assert topic.inputs["kmsMasterKeyId"].startswith(f"arn:aws:kms:us-east-1:{PLATFORM}:key/"), topic.urn
    [definition] = stack.of_type("aws:amp/alertManagerDefinition:AlertManagerDefinition")
    config = yaml.safe_load(yaml.safe_load(definition.inputs["definition"])["alertmanager_config"])
    [receiver] = config["receivers"]
    assert receiver["sns_configs"][0]["topic_arn"] == topic.outputs["arn"], definition.urn
    [policy] = stack.of_type("aws:sns/topicPolicy:TopicPolicy")
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "aps.amazonaws.com"}, policy.urn
    [workspace] = stack.of_type("aws:amp/workspace:Workspace")
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == workspace.outputs["arn"], policy.urn
    # The topic's key lets the AMP service encrypt, or every notification fails.
    [key] = [k for k in stack.of_type("aws:kms/key:Key") if k.outputs["arn"] == topic.inputs["kmsMasterKeyId"]]
    principals = [s["Principal"] for s in json.loads(key.inputs["policy"])["Statement"]]
    assert {"Service": "aps.amazonaws.com"} in principals, key.urn


def test_remote_write_role_trusts_only_the_consumers_collector_roles(rendered_fleet):
    stack = rendered_fleet["platform"]
    consumers = set(stack.spec.consumer_accounts.values())
    [role] = [r for r in stack.of_type("aws:iam/role:Role") if r.inputs.get("name") == REMOTE_WRITE_ROLE]
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert {p.split(":")[4] for p in statement["Principal"]["AWS"]} == consumers, role.urn
    assert set(statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == {
        f"arn:aws:iam::{a}:role/{COLLECTOR_ROLE}" for a in consumers}, role.urn
    [policy] = [p for p in stack.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]
    [workspace] = stack.of_type("aws:amp/workspace:Workspace")
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {"Effect": "Allow", "Action": "aps:RemoteWrite", "Resource": workspace.outputs["arn"]}], policy.urn


def test_grafana_reads_the_workspace_through_its_own_role(rendered_fleet):
    stack = rendered_fleet["platform"]
    [grafana] = stack.of_type("aws:grafana/workspace:Workspace")
    assert "PROMETHEUS" in grafana.inputs["dataSources"], grafana.urn
    assert grafana.inputs["permissionType"] == "CUSTOMER_MANAGED", grafana.urn
    assert stack.exports["monitoring"]["grafanaEndpoint"] == grafana.outputs["endpoint"]


def test_consumers_collectors_may_assume_the_platforms_remote_write_role(rendered_fleet):
    role_arn = rendered_fleet["platform"].exports["monitoring"]["remoteWriteRoleArn"]
    for name in ("training", "inference"):
        stack = rendered_fleet[name]
        [collector] = [r for r in stack.of_type("aws:iam/role:Role") if r.inputs.get("name") == COLLECTOR_ROLE]
        [policy] = [p for p in stack.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == collector.id]
        assert json.loads(policy.inputs["policy"])["Statement"][0]["Resource"] == role_arn, policy.urn
        assert stack.exports["metrics"]["collectorRoleArn"] == collector.outputs["arn"]


def test_consumers_alarm_on_missing_nodes_per_group_and_on_fsx_free_capacity(rendered_fleet):
    training = rendered_fleet["training"]
    # MetricsForwarding's alarms (the CIS alarms of the trail are TrailMonitoring's, tests/infra/test_trail_monitoring.py).
    alarms = [a for a in training.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.startswith("metrics-")
              and "slurm-head" not in a.name]
    [topic] = [t for t in training.of_type("aws:sns/topic:Topic") if t.name == "metrics-alarms"]
    asg_dimensions = set()
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]], alarm.urn
        for query in alarm.inputs.get("metricQueries", []):
            if "metric" in query:
                asg_dimensions.add(query["metric"]["dimensions"]["AutoScalingGroupName"])
    assert asg_dimensions == {g["asgName"] for g in training.exports["nodeGroups"]}
    [fsx] = [a for a in alarms if a.inputs.get("metricName") == "FreeDataStorageCapacity"]
    assert fsx.inputs["dimensions"] == {"FileSystemId": training.exports["storage"]["fileSystemId"]}, fsx.urn
    assert fsx.inputs["threshold"] == pytest.approx(0.10 * 4800 * 1024 ** 3), fsx.urn
    inference = rendered_fleet["inference"]
    [eks_alarm] = [a for a in inference.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.startswith("metrics-")]
    [group] = inference.exports["nodeGroups"]
    dims = [q["metric"]["dimensions"] for q in eks_alarm.inputs["metricQueries"] if "metric" in q]
    assert dims == [{"AutoScalingGroupName": group["asgName"]}] * 2, eks_alarm.urn

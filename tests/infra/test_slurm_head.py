"""The Slurm head as EC2 builds it: an ami- id read from SSM at deploy time (never the raw
``resolve:ssm:`` string with a root block device), no silent replacement on a newer image,
automatic recovery, and status-check alarms (rendered reference fleet)."""

from __future__ import annotations

from pathlib import Path

from gpufleet.infra.slurm_cluster import SlurmCluster, SlurmClusterArgs
from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack

REPO = Path(__file__).resolve().parents[2]


def test_head_ami_is_the_ssm_parameter_read_at_deploy_time_and_ignored_afterwards(mock_runtime):
    plan = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))
    cluster = SlurmCluster("slurm", SlurmClusterArgs(
        plan=plan, account_id="222222222222", region="us-east-1", vpc_id="vpc-1", vpc_cidr="10.20.0.0/16",
        s3_prefix_list_id="pl-63a5400a", head_subnet_id="subnet-0head"))
    mock_runtime.settle(cluster.head_instance_id)
    [head] = mock_runtime.registered("aws:ec2/instance:Instance")
    ami = head["inputs"]["ami"]
    assert ami.startswith("ami-") and "resolve:ssm" not in ami, head["urn"]
    assert "ami" in head["ignore_changes"], head["urn"]
    assert head["inputs"]["maintenanceOptions"] == {"autoRecovery": "default"}, head["urn"]


def test_head_status_checks_recover_and_page_the_stack_topic(rendered_fleet):
    training = rendered_fleet["training"]
    [head] = training.of_type("aws:ec2/instance:Instance")
    alarms = {r.inputs["metricName"]: r.inputs for r in training.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if (r.inputs.get("dimensions") or {}).get("InstanceId") == head.outputs["id"]}
    assert set(alarms) == {"StatusCheckFailed_System", "StatusCheckFailed_Instance"}
    [topic] = [r for r in training.of_type("aws:sns/topic:Topic") if r.name == "metrics-alarms"]
    system, instance = alarms["StatusCheckFailed_System"], alarms["StatusCheckFailed_Instance"]
    assert system["alarmActions"] == ["arn:aws:automate:us-east-1:ec2:recover", topic.outputs["arn"]]
    assert instance["alarmActions"] == [topic.outputs["arn"]]
    assert system["namespace"] == instance["namespace"] == "AWS/EC2"

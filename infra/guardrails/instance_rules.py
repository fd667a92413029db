"""Single EC2 instances (the Slurm head): an image EC2 accepts with a root block device, and an
instance that comes back by itself and pages when it cannot. Pure: no pulumi import."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from gpufleet.infra.guardrails.linking import identities, of_type, refers_to
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Violation,
    get,
    peek,
)

INSTANCE = "aws:ec2/instance:Instance"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


def check_ami_resolved(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    ami = get(resource, "ami")
    if peek(resource, "rootBlockDevice") is not None and not (isinstance(ami, str) and AMI_ID.match(ami)):
        yield (f"Instance {resource.name}: ami {ami!r} is not an ami- id. With a root block device the provider "
               "calls DescribeImages with it first and EC2 rejects anything else (InvalidAMIID.Malformed, "
               "terraform-provider-aws #43488). Resolve the parameter at deploy time (ssm.get_parameter).")


def _alarms_on(resources: Sequence[Resource], instance: Resource) -> list[Resource]:
    ids = identities(instance) - {instance.urn}
    return [a for a in of_type(resources, ALARM)
            if (a.inputs.get("dimensions") or {}).get("InstanceId") in ids]


def check_recovery(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    topics = of_type(resources, TOPIC)
    for instance in of_type(resources, INSTANCE):
        alarms = [a for a in _alarms_on(resources, instance)
                  if str(a.inputs.get("metricName", "")).startswith("StatusCheckFailed")]
        paged = [a for a in alarms if any(refers_to(a, "alarmActions", t) for t in topics)]
        recovers = get(instance, "maintenanceOptions.autoRecovery", default="") == "default" or any(
            str(action).endswith(":ec2:recover") for a in alarms for action in a.inputs.get("alarmActions") or ())
        if not paged:
            yield Violation(resource=instance.name, urn=instance.urn, message=(
                f"Instance {instance.name}: no status-check alarm (StatusCheckFailed*) on it pages an SNS topic "
                "of this stack; a dead head node goes unnoticed. MetricsForwarding's hosts alarms do."))
        if not recovers:
            yield Violation(resource=instance.name, urn=instance.urn, message=(
                f"Instance {instance.name}: nothing recovers it when its host fails. Set maintenance_options "
                "auto_recovery='default', or alarm on StatusCheckFailed_System with the "
                "arn:aws:automate:<region>:ec2:recover action."))


RULES: tuple[Rule, ...] = (
    Rule(id="ec2.instance-ami-resolved", severity=Severity.MANDATORY, scope=Scope.RESOURCE, types=(INSTANCE,),
         summary="An instance with a root block device names its image by ami- id.",
         fix="resolve the SSM parameter at deploy time (ssm.get_parameter) and ignore later changes",
         check_resource=check_ami_resolved),
    Rule(id="ec2.instance-recovery", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every single instance recovers by itself and has a status-check alarm to a topic.",
         fix="maintenance_options auto_recovery default (or a recover alarm) and a StatusCheckFailed alarm",
         check_stack=check_recovery),
)

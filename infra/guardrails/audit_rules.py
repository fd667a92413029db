"""Audit rules (HIPAA 164.312(b)): object-level records of every bucket, the trail in CloudWatch
Logs with the CIS monitoring alarms, and default security groups without rules. Stack scope: each
reads a stack's resources together. Pure: no pulumi import."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gpufleet.infra.audit_trail import CIS_CHECKS, S3_OBJECT
from gpufleet.infra.guardrails.linking import companions, identities, of_type, refers_to
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Unevaluable,
    Unknown,
    Violation,
    get,
)
from gpufleet.infra.key_policies import partition_of

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
TRAIL = "aws:cloudtrail/trail:Trail"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
METRIC_FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
VPC = "aws:ec2/vpc:Vpc"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
READ, WRITE = "read", "write"


def _objects_prefix(bucket: Resource) -> str:
    name = bucket.outputs.get("bucket") or bucket.inputs.get("bucket")
    if not isinstance(name, str) or not name:
        raise Unevaluable("bucket", "(the bucket's name) is not known")
    return f"arn:{partition_of(bucket.region)}:s3:::{name}/"


def _advanced_coverage(selector: Mapping[str, Any], prefix: str) -> set[str]:
    """Which of read/write of every object under ``prefix`` one advanced selector records."""
    fields = {f.get("field"): f for f in selector.get("fieldSelectors") or ()}
    if (fields.get("eventCategory", {}).get("equals") != ["Data"]
            or fields.get("resources.type", {}).get("equals") != [S3_OBJECT]):
        return set()
    if set(fields) - {"eventCategory", "resources.type", "resources.ARN", "readOnly"}:
        return set()  # filtered by event name or more: not every access
    arn = fields.get("resources.ARN", {})
    if set(arn) - {"field", "startsWiths", "notStartsWiths"}:
        return set()
    starts = arn.get("startsWiths")
    if starts and not any(prefix.startswith(s) for s in starts):
        return set()
    if any(prefix.startswith(s) or s.startswith(prefix) for s in arn.get("notStartsWiths") or ()):
        return set()
    read_only = fields.get("readOnly", {}).get("equals")
    return {READ} if read_only == ["true"] else {WRITE} if read_only == ["false"] else {READ, WRITE}


def _basic_coverage(selector: Mapping[str, Any], prefix: str) -> set[str]:
    kinds = {"All": {READ, WRITE}, "ReadOnly": {READ}, "WriteOnly": {WRITE}}[selector.get("readWriteType") or "All"]
    for resource in selector.get("dataResources") or ():
        if resource.get("type") == S3_OBJECT and any(
                prefix.startswith(v) for v in resource.get("values") or () if v.endswith(("/", ":s3"))):
            return kinds
    return set()


def trail_coverage(trail: Resource, prefix: str) -> set[str]:
    """What the trail records of the objects under ``prefix`` (read, write)."""
    covered: set[str] = set()
    advanced = get(trail, "advancedEventSelectors", default=[])
    if isinstance(advanced, Unknown):
        raise Unevaluable("advancedEventSelectors", "is not known yet (computed during preview)")
    for selector in advanced:
        covered |= _advanced_coverage(selector, prefix)
    for selector in get(trail, "eventSelectors", default=[]):
        covered |= _basic_coverage(selector, prefix)
    return covered


def check_object_level(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    trails = of_type(resources, TRAIL)
    for bucket in of_type(resources, BUCKET):
        logging = [c for c in companions(resources, bucket, "bucket", *BUCKET_LOGGING)
                   if not refers_to(c, "targetBucket", bucket)]
        if logging:
            continue
        prefix = _objects_prefix(bucket)
        needed = {READ, WRITE}
        covered: set[str] = set()
        for trail in trails:
            if refers_to(trail, "s3BucketName", bucket):
                # The trail's own deliveries are writes; recording them would record each delivery again.
                needed = {READ}
            covered |= trail_coverage(trail, prefix)
        if not needed <= covered:
            missing = " and ".join(sorted(needed - covered))
            yield Violation(resource=bucket.name, urn=bucket.urn, message=(
                f"Bucket {bucket.name}: no object-level record of its {missing}s (HIPAA 164.312(b)). Log "
                f"CloudTrail S3 data events for {prefix} (AccountBaseline's trail does, for every bucket of the "
                "account), or deliver server access logs to another bucket."))


def _trail_log_groups(resources: Sequence[Resource], trail: Resource) -> list[Resource]:
    arn = trail.inputs.get("cloudWatchLogsGroupArn")
    if not isinstance(arn, str) or not arn:
        return []
    # CloudTrail wants the group's ARN with a ``:*`` suffix; links (preview) or the plain ARN match.
    return [g for g in of_type(resources, LOG_GROUP)
            if refers_to(trail, "cloudWatchLogsGroupArn", g) or arn.removesuffix(":*") in identities(g)]


def check_trail_logs(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for trail in of_type(resources, TRAIL):
        if not _trail_log_groups(resources, trail) or not trail.inputs.get("cloudWatchLogsRoleArn"):
            yield Violation(resource=trail.name, urn=trail.urn, message=(
                f"Trail {trail.name} delivers to no CloudWatch Logs group of this stack (cloudWatchLogsGroupArn "
                f"{trail.inputs.get('cloudWatchLogsGroupArn')!r}, cloudWatchLogsRoleArn "
                f"{trail.inputs.get('cloudWatchLogsRoleArn')!r}): nothing can alarm on it. Give it a KMS-encrypted "
                "log group and a delivery role (TrailMonitoring does)."))


def check_cis_alarms(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    topics = of_type(resources, TOPIC)
    for trail in of_type(resources, TRAIL):
        groups = _trail_log_groups(resources, trail)
        filters = [f for g in groups for f in companions(resources, g, "logGroupName", METRIC_FILTER)]
        missing = []
        for check in CIS_CHECKS:
            if not any(_filter_matches(f, check.terms) and _alarmed(resources, f, topics) for f in filters):
                missing.append(f"{check.control} {check.metric}")
        if missing:
            yield Violation(resource=trail.name, urn=trail.urn, message=(
                f"Trail {trail.name}: no metric filter with an alarm to an SNS topic of this stack for CIS "
                f"{', '.join(missing)}. Add a LogMetricFilter on the trail's log group and a MetricAlarm on its "
                "metric with alarm_actions=[topic] (TrailMonitoring does)."))


def _filter_matches(metric_filter: Resource, terms: Sequence[str]) -> bool:
    pattern = metric_filter.inputs.get("pattern")
    return isinstance(pattern, str) and all(t in pattern for t in terms)


def _alarmed(resources: Sequence[Resource], metric_filter: Resource, topics: Sequence[Resource]) -> bool:
    transform = metric_filter.inputs.get("metricTransformation") or {}
    for alarm in of_type(resources, ALARM):
        if (alarm.inputs.get("metricName") == transform.get("name")
                and alarm.inputs.get("namespace") == transform.get("namespace")
                and any(refers_to(alarm, "alarmActions", t) for t in topics)):
            return True
    return False


def check_default_security_groups(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for vpc in of_type(resources, VPC):
        groups = companions(resources, vpc, "vpcId", DEFAULT_SG)
        if not groups:
            yield Violation(resource=vpc.name, urn=vpc.urn, message=(
                f"Vpc {vpc.name}: its default security group keeps AWS's default rules (all traffic from "
                "itself, all egress). Adopt it with ec2.DefaultSecurityGroup and no ingress or egress."))
        for group in groups:
            rules = [p for p in ("ingress", "egress") if group.inputs.get(p)]
            if rules:
                yield Violation(resource=group.name, urn=group.urn, message=(
                    f"DefaultSecurityGroup {group.name} of {vpc.name} has {' and '.join(rules)} rules. Leave "
                    "both empty: nothing should use the default group (CIS 5.4)."))


RULES: tuple[Rule, ...] = (
    Rule(id="audit.s3-object-level", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every bucket's object reads and writes are recorded (CloudTrail data events or access logs).",
         fix="log S3 data events on the account trail, or server access logs to another bucket",
         check_stack=check_object_level),
    Rule(id="cloudtrail.cloudwatch-logs", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every trail also delivers to a CloudWatch Logs group of its stack.",
         fix="set cloud_watch_logs_group_arn and cloud_watch_logs_role_arn (TrailMonitoring)",
         check_stack=check_trail_logs),
    Rule(id="cloudtrail.cis-alarms", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="The trail's log group has the CIS monitoring metric filters, each alarmed to an SNS topic.",
         fix="a LogMetricFilter and a MetricAlarm to the topic per CIS check (TrailMonitoring)",
         check_stack=check_cis_alarms),
    Rule(id="vpc.default-sg-closed", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every VPC's default security group is adopted with no rules.",
         fix="ec2.DefaultSecurityGroup(vpc_id=..., ingress=[], egress=[])",
         check_stack=check_default_security_groups),
)

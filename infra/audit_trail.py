"""What the account trail records and what it alarms on, as plain data. Pure: no pulumi import.

Object-level audit (HIPAA 164.312(b)) is CloudTrail S3 data events, not server access logs: data
events are complete (access logs are best-effort), land in the same object-locked, KMS-encrypted,
digest-validated bucket as the management events, and reach CloudWatch Logs with them; an access-log
target must be SSE-S3 without object lock, weaker than every other bucket of the fleet. The
selectors cover every bucket of the account, so a bucket added later (a release, a dataset, the
lifecycle bundle) is audited without a trail change; the trail's own bucket is recorded for reads
only (who read the audit logs), since its writes are CloudTrail's own deliveries (a record of each
delivery would be delivered again) and its deletes are denied.

The alarms are the CIS AWS Foundations Benchmark monitoring set (section 4 of v1.4 / v1.5): one
metric filter on the trail's log group and one alarm per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

METRIC_NAMESPACE = "gpufleet/CISBenchmark"
"""CloudWatch namespace of the CIS metric filters."""
S3_OBJECT = "AWS::S3::Object"


@dataclass(frozen=True, kw_only=True)
class CisCheck:
    """One CIS monitoring control: a metric filter on the trail's log group and its alarm."""

    control: str
    """CIS AWS Foundations control number (v1.4 section 4)."""
    metric: str
    """Metric name the filter emits (1 per matching event)."""
    terms: tuple[str, ...]
    """What the pattern must mention (event names, fields): the guardrail checks the pattern has them."""
    pattern: str
    """CloudWatch Logs filter pattern over CloudTrail's JSON records."""
    description: str
    """What an alarm means, for the person paged."""


def _events(names: Sequence[str], source: str | None = None) -> str:
    alternatives = " || ".join(f"($.eventName = {n})" for n in names)
    return f"{{ ($.eventSource = {source}) && ({alternatives}) }}" if source else f"{{ {alternatives} }}"


def _check(control: str, metric: str, description: str, names: Sequence[str], source: str | None = None) -> CisCheck:
    return CisCheck(control=control, metric=metric, terms=tuple(names) + ((source,) if source else ()),
                    pattern=_events(names, source), description=description)


CIS_CHECKS: tuple[CisCheck, ...] = (
    CisCheck(control="4.1", metric="UnauthorizedApiCalls", terms=("UnauthorizedOperation", "AccessDenied"),
             pattern='{ (($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*")) '
                     '&& ($.sourceIPAddress != "delivery.logs.amazonaws.com") && ($.eventName != "HeadBucket") }',
             description="API calls denied for lack of permission"),
    CisCheck(control="4.2", metric="ConsoleLoginWithoutMfa", terms=("ConsoleLogin", "MFAUsed"),
             pattern='{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") '
                     '&& ($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }',
             description="console sign-in without MFA"),
    CisCheck(control="4.3", metric="RootAccountUse", terms=("Root", "invokedBy", "AwsServiceEvent"),
             pattern='{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS '
                     '&& $.eventType != "AwsServiceEvent" }',
             description="the root user did something"),
    _check("4.4", "IamPolicyChanges", "an IAM policy changed", (
        "DeleteGroupPolicy", "DeleteRolePolicy", "DeleteUserPolicy", "PutGroupPolicy", "PutRolePolicy",
        "PutUserPolicy", "CreatePolicy", "DeletePolicy", "CreatePolicyVersion", "DeletePolicyVersion",
        "AttachRolePolicy", "DetachRolePolicy", "AttachUserPolicy", "DetachUserPolicy", "AttachGroupPolicy",
        "DetachGroupPolicy")),
    _check("4.5", "CloudTrailChanges", "a trail changed or stopped logging", (
        "CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")),
    CisCheck(control="4.6", metric="ConsoleAuthenticationFailures", terms=("ConsoleLogin", "Failed authentication"),
             pattern='{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }',
             description="failed console sign-ins"),
    _check("4.7", "KmsKeyDisableOrDeletion", "a customer managed key was disabled or scheduled for deletion",
           ("DisableKey", "ScheduleKeyDeletion"), "kms.amazonaws.com"),
    _check("4.8", "S3BucketPolicyChanges", "a bucket policy, ACL, CORS, lifecycle or replication changed", (
        "PutBucketAcl", "PutBucketPolicy", "PutBucketCors", "PutBucketLifecycle", "PutBucketReplication",
        "DeleteBucketPolicy", "DeleteBucketCors", "DeleteBucketLifecycle", "DeleteBucketReplication"),
        "s3.amazonaws.com"),
    _check("4.9", "ConfigChanges", "AWS Config recording or delivery changed", (
        "StopConfigurationRecorder", "DeleteDeliveryChannel", "PutDeliveryChannel", "PutConfigurationRecorder"),
        "config.amazonaws.com"),
    _check("4.10", "SecurityGroupChanges", "a security group changed", (
        "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress", "CreateSecurityGroup", "DeleteSecurityGroup")),
    _check("4.11", "NetworkAclChanges", "a network ACL changed", (
        "CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl", "DeleteNetworkAclEntry",
        "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation")),
    _check("4.12", "NetworkGatewayChanges", "an internet or customer gateway changed", (
        "CreateCustomerGateway", "DeleteCustomerGateway", "AttachInternetGateway", "CreateInternetGateway",
        "DeleteInternetGateway", "DetachInternetGateway")),
    _check("4.13", "RouteTableChanges", "a route or route table changed", (
        "CreateRoute", "CreateRouteTable", "ReplaceRoute", "ReplaceRouteTableAssociation", "DeleteRouteTable",
        "DeleteRoute", "DisassociateRouteTable"), "ec2.amazonaws.com"),
    _check("4.14", "VpcChanges", "a VPC or its peering changed", (
        "CreateVpc", "DeleteVpc", "ModifyVpcAttribute", "AcceptVpcPeeringConnection",
        "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection", "RejectVpcPeeringConnection")),
    _check("4.15", "OrganizationsChanges", "the AWS Organization changed", (
        "AcceptHandshake", "AttachPolicy", "CreateAccount", "CreateOrganizationalUnit", "CreatePolicy",
        "DeclineHandshake", "DeleteOrganization", "DeleteOrganizationalUnit", "DeletePolicy", "DetachPolicy",
        "DisablePolicyType", "EnablePolicyType", "InviteAccountToOrganization", "LeaveOrganization",
        "MoveAccount", "RemoveAccountFromOrganization", "UpdatePolicy", "UpdateOrganizationalUnit"),
        "organizations.amazonaws.com"),
)


@dataclass(frozen=True, kw_only=True)
class FieldSelector:
    """One condition of an advanced event selector (conditions of a selector are ANDed)."""

    field: str
    """eventCategory, resources.type, resources.ARN, readOnly."""
    equals: tuple[str, ...] = ()
    """The field equals one of these."""
    not_starts_with: tuple[str, ...] = ()
    """The field starts with none of these."""
    starts_with: tuple[str, ...] = ()
    """The field starts with one of these."""


@dataclass(frozen=True, kw_only=True)
class EventSelector:
    """One advanced event selector (selectors of a trail are ORed)."""

    name: str
    """Shown in the CloudTrail console."""
    fields: tuple[FieldSelector, ...]
    """Its conditions."""


def event_selectors(log_bucket_arn: str) -> tuple[EventSelector, ...]:
    """Management events, S3 object events of every bucket but the trail's own, and reads of that one.

    Advanced selectors replace the basic ones, so management events need a selector of their own.
    """
    objects = f"{log_bucket_arn}/"
    return (
        EventSelector(name="Management events", fields=(FieldSelector(field="eventCategory", equals=("Management",)),)),
        EventSelector(name="S3 object access, every bucket but the trail's", fields=(
            FieldSelector(field="eventCategory", equals=("Data",)),
            FieldSelector(field="resources.type", equals=(S3_OBJECT,)),
            FieldSelector(field="resources.ARN", not_starts_with=(objects,)))),
        EventSelector(name="Reads of the audit log", fields=(
            FieldSelector(field="eventCategory", equals=("Data",)),
            FieldSelector(field="resources.type", equals=(S3_OBJECT,)),
            FieldSelector(field="resources.ARN", starts_with=(objects,)),
            FieldSelector(field="readOnly", equals=("true",)))),
    )


def trail_logs_trust(trail_arn: str, account_id: str) -> dict[str, object]:
    """CloudTrail assumes the role that writes to the log group, for this trail only."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "CloudTrailDelivers", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceArn": trail_arn, "aws:SourceAccount": account_id}}}]}


def trail_logs_permissions(log_group_arn: str) -> dict[str, object]:
    """Create streams and put events in the trail's log group, nothing else (what AWS documents)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "TrailLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{log_group_arn}:log-stream:*"}]}

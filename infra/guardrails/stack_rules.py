"""Rules over one stack's resources together: things that must exist, and companions that must
point at what they protect (a StackValidationPolicy each in the pack). Pure: no pulumi import."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails import resource_rules as rr
from gpufleet.infra.guardrails.linking import companions, of_type, refers_to
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Unevaluable,
    Violation,
    get,
)

BUCKET = "aws:s3/bucket:Bucket"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
OBJECT_LOCK = ("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
               "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2")
TRAIL = "aws:cloudtrail/trail:Trail"
ROLE = "aws:iam/role:Role"


def stack_name(resources: Sequence[Resource]) -> str:
    return resources[0].stack if resources else "?"


def bucket_companion(types: tuple[str, ...], what: str, fix: str):
    def check(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
        for bucket in of_type(resources, BUCKET):
            if BUCKET in types and get(bucket, "serverSideEncryptionConfiguration", default=None) is not None:
                continue
            if not companions(resources, bucket, "bucket", *types):
                yield Violation(resource=bucket.name, urn=bucket.urn,
                                message=f"Bucket {bucket.name} has no {what}. {fix}")
    return check


def single(type_token: str, what: str, fix: str):
    def check(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
        if resources and not of_type(resources, type_token):
            stack = stack_name(resources)
            yield Violation(resource=stack, message=f"stack {stack} has no {what}. {fix}")
    return check


def check_ebs_presence(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    yield from single("aws:ebs/encryptionByDefault:EncryptionByDefault", "default EBS encryption",
                      "Add ebs.EncryptionByDefault(enabled=True) (AccountBaseline does).")(resources, ctx)
    yield from single("aws:ebs/defaultKmsKey:DefaultKmsKey", "default EBS key",
                      "Add ebs.DefaultKmsKey with a customer managed key (AccountBaseline does).")(resources, ctx)


def check_flow_logs(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for vpc in of_type(resources, "aws:ec2/vpc:Vpc"):
        if not companions(resources, vpc, "vpcId", "aws:ec2/flowLog:FlowLog"):
            yield Violation(resource=vpc.name, urn=vpc.urn,
                            message=f"Vpc {vpc.name} has no flow log. Add ec2.FlowLog(vpc_id=..., traffic_type=ALL) "
                                    "to a KMS-encrypted log group.")


def check_trail_bucket(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """The trail's bucket keeps every log file: versioned, and object lock or a deny-delete policy."""
    for trail in of_type(resources, TRAIL):
        buckets = [b for b in of_type(resources, BUCKET) if refers_to(trail, "s3BucketName", b)]
        if not buckets:
            yield Violation(resource=trail.name, urn=trail.urn,
                            message=f"Trail {trail.name} writes to a bucket outside this stack "
                                    f"({trail.inputs.get('s3BucketName')!r}); the guardrail cannot see it is "
                                    "immutable. Create the log bucket in the same stack (AccountBaseline does).")
            continue
        bucket = buckets[0]
        versioned = any(get(v, "versioningConfiguration.status", default=None) == "Enabled"
                        for v in companions(resources, bucket, "bucket", *VERSIONING))
        # Object lock on the bucket protects nothing until a default retention applies to new objects.
        locked = any(get(c, "rule.defaultRetention", default=None)
                     for c in companions(resources, bucket, "bucket", *OBJECT_LOCK))
        deny_delete = any(_denies_delete(p) for p in companions(resources, bucket, "bucket", POLICY))
        if not versioned:
            yield Violation(resource=bucket.name, urn=bucket.urn,
                            message=f"Bucket {bucket.name} holds CloudTrail logs without versioning. "
                                    "Add BucketVersioning with status Enabled.")
        if not (locked or deny_delete):
            yield Violation(resource=bucket.name, urn=bucket.urn,
                            message=f"Bucket {bucket.name} holds CloudTrail logs that can be deleted. Add an "
                                    "object lock configuration or a bucket policy statement denying "
                                    "s3:DeleteObject and s3:DeleteObjectVersion to every principal.")


def _denies_delete(policy: Resource) -> bool:
    for st in docs.parse(get(policy, "policy"), "policy"):
        if st.effect == "Deny" and "*" in st.aws_principals and not st.conditions and any(
                docs.action_matches(a, "s3:DeleteObjectVersion") for a in st.actions):
            return True
    return False


OPERATOR_ACTIONS = (
    "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:UpdateAutoScalingGroup", "eks:UpdateNodegroupConfig",
)
"""What the operator role may change: the size of its stack's node groups, and which nodes leave."""
OPERATOR_READS = ("autoscaling:Describe*", "ec2:Describe*", "eks:Describe*", "eks:List*", "cloudwatch:GetMetricData")
"""What ``gpufleet status`` and the rebalancer read (GetMetricData: the groups' capacity metrics of
``status --chart``; CloudWatch reads take no resource narrower than ``*``)."""
OPERATOR_PROBE = ("ssm:SendCommand", "ssm:GetCommandInvocation")
"""The health probe through SSM: allowed only outside PHI accounts (no SSM there)."""


def operator_roles(resources: Sequence[Resource], ctx: FleetContext) -> list[Resource]:
    """Roles in a consumer account that a platform principal may assume."""
    found = []
    for role in of_type(resources, ROLE):
        if role.account_id not in ctx.consumer_accounts:
            continue
        try:
            statements = docs.parse(get(role, "assumeRolePolicy"), "assumeRolePolicy")
        except Unevaluable:
            continue  # iam.role-trust reports it
        if any(st.allows and docs.account_of(p) in ctx.platform_accounts
               for st in statements for p in st.aws_principals):
            found.append(role)
    return found


def check_operator_permissions(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for role in operator_roles(resources, ctx):
        documents = [(f"{role.name}.{prop}", doc) for prop, doc in docs.iter_documents(role.type, role.inputs)
                     if prop != "assumeRolePolicy"]
        documents += [(f"RolePolicy {p.name}", get(p, "policy"))
                      for p in companions(resources, role, "role", "aws:iam/rolePolicy:RolePolicy")]
        for attachment in companions(resources, role, "role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
            yield Violation(resource=attachment.name, urn=attachment.urn,
                            message=f"operator role {role.name} gets managed policy "
                                    f"{attachment.inputs.get('policyArn')}. The operator role carries only its "
                                    "inline scale/drain policy; remove the attachment.")
        for where, document in documents:
            for st in docs.parse(document, where):
                if not st.allows:
                    continue
                probe = () if ctx.is_phi(role.account_id) else OPERATOR_PROBE
                extra = docs.actions_within(st, OPERATOR_ACTIONS + OPERATOR_READS + probe)
                if extra:
                    yield Violation(resource=role.name, urn=role.urn,
                                    message=f"operator role {role.name} ({where}, statement {st.sid}) allows "
                                            f"{', '.join(extra)}. It may only scale/drain node groups "
                                            f"({', '.join(OPERATOR_ACTIONS)}), read ({', '.join(OPERATOR_READS)})"
                                            + (f" and probe nodes ({', '.join(probe)})." if probe else
                                               "; SSM is not allowed in a PHI account."))
                    continue
                mutating = [a for a in st.actions if any(docs.action_matches(a, m) for m in OPERATOR_ACTIONS)]
                # Every group of the account is as good as "*" when no condition picks the node groups.
                if mutating and not st.conditions and any(
                        r == "*" or r.endswith("autoScalingGroupName/*") for r in st.resources):
                    yield Violation(resource=role.name, urn=role.urn,
                                    message=f"operator role {role.name} ({where}, statement {st.sid}) allows "
                                            f"{', '.join(mutating)} on every resource. Condition it on the "
                                            "stack's node-group tag or name the node groups' ARNs.")


RULES: tuple[Rule, ...] = (
    Rule(id="s3.bucket-sse-kms", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every bucket has a server-side encryption configuration.", fix="",
         check_stack=bucket_companion((*rr.SSE_TYPES, BUCKET), "server-side encryption configuration",
                                      "Add a BucketServerSideEncryptionConfiguration with aws:kms and a CMK.")),
    Rule(id="s3.public-access-block", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every bucket has a public access block.", fix="",
         check_stack=bucket_companion((PAB,), "public access block",
                                      "Add a BucketPublicAccessBlock with all four settings true.")),
    Rule(id="s3.tls-only", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every bucket has a policy (which must deny plain HTTP).", fix="",
         check_stack=bucket_companion((POLICY,), "bucket policy",
                                      "Add a BucketPolicy denying requests with aws:SecureTransport false.")),
    Rule(id="s3.account-public-access-block", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every stack's account blocks public S3 access account-wide.", fix="",
         check_stack=single("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
                            "account-level S3 public access block",
                            "Add s3.AccountPublicAccessBlock with all four settings true (AccountBaseline does).")),
    Rule(id="ebs.default-encryption", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every stack turns on default EBS encryption with a CMK.", fix="", check_stack=check_ebs_presence),
    Rule(id="cloudtrail.present", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every stack's account has a CloudTrail trail.",
         fix="add a multi-region trail (AccountBaseline has one)",
         check_stack=single(TRAIL, "CloudTrail trail", "Add AccountBaseline, which creates a multi-region trail.")),
    Rule(id="cloudtrail.log-bucket-immutable", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="The trail's bucket is in the stack, versioned, and object-locked or deny-delete.",
         fix="enable versioning and object lock, or deny s3:DeleteObject* in the bucket policy",
         check_stack=check_trail_bucket),
    Rule(id="vpc.flow-logs", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Every VPC has a flow log.", fix="add ec2.FlowLog for the VPC",
         check_stack=check_flow_logs),
    Rule(id="iam.operator-permissions", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Operator roles may only scale and drain node groups and read their state.",
         fix="keep the operator policy to the scale/drain actions, conditioned on the stack's node groups",
         check_stack=check_operator_permissions),
)

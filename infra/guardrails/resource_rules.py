"""Rules that judge one resource at a time (a ResourceValidationPolicy each in the pack).

Pure: no pulumi import. A check yields one message per problem and raises ``Unevaluable`` when a
property it needs is missing or unknown; the runner turns that into a finding too.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Unevaluable,
    Unknown,
    get,
    peek,
    truthy,
)

WORLD = ("0.0.0.0/0", "::/0")


def label(resource: Resource) -> str:
    return f"{resource.type.rsplit(':', 1)[-1]} {resource.name}"


def aws_managed_key(key: str) -> bool:
    """``alias/aws/s3``, ``arn:...:alias/aws/logs``: keys the account cannot scope or audit."""
    return "alias/aws/" in key


def cmk_problem(resource: Resource, prop: str, what: str) -> str | None:
    """None when ``prop`` names a customer managed key, else the message."""
    key = peek(resource, prop)
    if key is None or key == "":
        return (f"{label(resource)} encrypts {what} with the AWS managed key: {prop} is not set. "
                f"Set {prop} to the ARN of a customer managed KMS key of this account.")
    if isinstance(key, Unknown):
        return None  # a reference to a key created in this preview: AWS managed keys are always literal
    if not isinstance(key, str):
        raise Unevaluable(prop, f"is {key!r}, not a key ARN")
    if aws_managed_key(key):
        return (f"{label(resource)} encrypts {what} with the AWS managed key {key}. "
                f"Set {prop} to a customer managed KMS key (rotation on, policy limited to the account).")
    return None


# --- S3 ---------------------------------------------------------------------------------------

SSE_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")


def check_bucket_sse(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:s3/bucket:Bucket":
        if get(resource, "serverSideEncryptionConfiguration", default=None) is None:
            return  # configured by a companion resource; the stack part checks it exists
        rules = get(resource, "serverSideEncryptionConfiguration.rule", default=None)
        rules = [rules] if isinstance(rules, dict) else rules
        prefix = "serverSideEncryptionConfiguration.rule"
    else:
        rules = get(resource, "rules")
        prefix = "rules"
    if not rules:
        raise Unevaluable(prefix, "is empty")
    for i, _ in enumerate(rules):
        path = f"{prefix}[{i}].applyServerSideEncryptionByDefault"
        algorithm = get(resource, f"{path}.sseAlgorithm")
        if algorithm not in ("aws:kms", "aws:kms:dsse"):
            yield (f"{label(resource)} uses sseAlgorithm {algorithm!r}. Set sseAlgorithm to aws:kms "
                   "with kmsMasterKeyId a customer managed key (SSE-S3/AES256 cannot be scoped by key policy).")
            continue
        problem = cmk_problem(resource, f"{path}.kmsMasterKeyId", "objects")
        if problem:
            yield problem


def check_public_access_block(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    off = [flag for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
           if not truthy(get(resource, flag), flag)]
    if off:
        yield (f"{label(resource)} leaves {', '.join(off)} off. Set all four of blockPublicAcls, "
               "blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true.")


def denies_insecure_transport(statements: list[docs.Statement]) -> bool:
    for st in statements:
        if st.effect != "Deny" or "*" not in st.aws_principals:
            continue
        if not any(docs.action_matches(a, "s3:GetObject") and docs.action_matches(a, "s3:PutObject")
                   for a in st.actions):
            continue
        if any(v.lower() == "false" for v in st.condition_values("aws:SecureTransport")):
            return True
    return False


def check_tls_only(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    statements = docs.parse(get(resource, "policy"), "policy")
    if not denies_insecure_transport(statements):
        yield (f"{label(resource)} does not deny plain-HTTP requests. Add a statement "
               "Effect Deny, Principal *, Action s3:*, Resource the bucket and bucket/*, "
               'Condition {"Bool": {"aws:SecureTransport": "false"}}.')


PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}


def check_no_public_grants(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:s3/bucketPolicy:BucketPolicy":
        for st in docs.parse(get(resource, "policy"), "policy"):
            if st.allows and "*" in st.aws_principals and not _scoped_by_condition(st):
                yield (f"{label(resource)} statement {st.sid} allows Principal * "
                       f"({', '.join(st.actions)}). Name the principals (role ARNs) instead of *.")
        return
    acl = get(resource, "acl", default=None)
    if isinstance(acl, str) and acl in PUBLIC_ACLS:
        yield f"{label(resource)} sets the canned ACL {acl}. Use private and grant access by bucket policy to named roles."


SCOPING_KEYS = ("aws:PrincipalAccount", "aws:PrincipalOrgID", "aws:SourceAccount", "aws:SourceArn",
                "aws:PrincipalArn", "aws:SourceVpce", "aws:SourceVpc", "kms:CallerAccount")


def _scoped_by_condition(st: docs.Statement) -> bool:
    return any(st.condition_values(key) for key in SCOPING_KEYS)


def check_account_public_access_block(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    yield from check_public_access_block(resource, ctx)


# --- encryption under customer keys -----------------------------------------------------------

def cmk_check(prop: str, what: str):
    def check(resource: Resource, ctx: FleetContext) -> Iterator[str]:
        problem = cmk_problem(resource, prop, what)
        if problem:
            yield problem
    return check


def check_dynamodb(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    enabled = get(resource, "serverSideEncryption.enabled", default=False)
    if not truthy(enabled, "serverSideEncryption.enabled"):
        yield (f"{label(resource)} uses the AWS owned key. Set serverSideEncryption "
               "{enabled: true, kmsKeyArn: <customer managed key>}.")
        return
    problem = cmk_problem(resource, "serverSideEncryption.kmsKeyArn", "items")
    if problem:
        yield problem


def check_eks_secrets(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "eks:index:Cluster":
        problem = cmk_problem(resource, "encryptionConfigKeyArn", "Kubernetes secrets")
        if problem:
            yield problem
        return
    config = get(resource, "encryptionConfig", default=None)
    if config is None:
        yield (f"{label(resource)} stores Kubernetes secrets without envelope encryption. Set "
               "encryptionConfig {resources: [secrets], provider: {keyArn: <customer managed key>}}.")
        return
    if "secrets" not in (get(resource, "encryptionConfig.resources", default=[]) or []):
        yield f"{label(resource)} encryptionConfig does not cover secrets. Add secrets to encryptionConfig.resources."
    problem = cmk_problem(resource, "encryptionConfig.provider.keyArn", "Kubernetes secrets")
    if problem:
        yield problem


def check_ebs_default(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:ebs/encryptionByDefault:EncryptionByDefault":
        if not truthy(get(resource, "enabled"), "enabled"):
            yield f"{label(resource)} turns default EBS encryption off. Set enabled: true."
        return
    problem = cmk_problem(resource, "keyArn", "new EBS volumes by default")
    if problem:
        yield problem


def check_volume_encryption(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:ebs/volume:Volume":
        if not truthy(get(resource, "encrypted", default=False), "encrypted"):
            yield f"{label(resource)} is not encrypted. Set encrypted: true (and kmsKeyId to a customer managed key)."
        return
    for i, mapping in enumerate(get(resource, "blockDeviceMappings", default=[]) or []):
        if not isinstance(mapping, dict) or "ebs" not in mapping:
            continue
        encrypted = get(resource, f"blockDeviceMappings[{i}].ebs.encrypted")
        if not truthy(encrypted, f"blockDeviceMappings[{i}].ebs.encrypted"):
            yield (f"{label(resource)} block device {mapping.get('deviceName', i)} is not encrypted. "
                   "Set ebs.encrypted: true.")


def check_ecr(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    kind = get(resource, "encryptionConfigurations[0].encryptionType", default="AES256")
    if kind != "KMS":
        yield (f"{label(resource)} encrypts images with {kind}. Set encryptionConfigurations "
               "[{encryptionType: KMS, kmsKey: <customer managed key>}].")
        return
    problem = cmk_problem(resource, "encryptionConfigurations[0].kmsKey", "images")
    if problem:
        yield problem


# --- network ----------------------------------------------------------------------------------

def check_world_ingress(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:ec2/securityGroup:SecurityGroup":
        rules = get(resource, "ingress", default=[]) or []
        blocks = [(r, (r.get("cidrBlocks") or []) + (r.get("ipv6CidrBlocks") or [])) for r in rules]
    elif resource.type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if get(resource, "type") != "ingress":
            return
        blocks = [(resource.inputs, list(get(resource, "cidrBlocks", default=[]) or [])
                   + list(get(resource, "ipv6CidrBlocks", default=[]) or []))]
    else:
        blocks = [(resource.inputs, [c for c in (get(resource, "cidrIpv4", default=None),
                                                 get(resource, "cidrIpv6", default=None)) if c])]
    for rule, cidrs in blocks:
        world = [c for c in cidrs if c in WORLD]
        if world:
            ports = f"{rule.get('fromPort', '?')}-{rule.get('toPort', '?')}/{rule.get('protocol', rule.get('ipProtocol', '?'))}"
            yield (f"{label(resource)} allows ingress on {ports} from {', '.join(world)}. Allow only the "
                   "security groups or VPC CIDRs that need it; reach nodes through SSM Session Manager, not SSH.")


def check_public_ip(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if resource.type == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, nic in enumerate(get(resource, "networkInterfaces", default=[]) or []):
            value = nic.get("associatePublicIpAddress") if isinstance(nic, dict) else None
            if value is not None and truthy(value, f"networkInterfaces[{i}].associatePublicIpAddress"):
                yield (f"{label(resource)} network interface {nic.get('networkCardIndex', i)} associates a "
                       "public IP. Set associatePublicIpAddress: false; nodes egress through NAT or endpoints.")
                return
    elif resource.type == "aws:ec2/subnet:Subnet":
        if truthy(get(resource, "mapPublicIpOnLaunch", default=False), "mapPublicIpOnLaunch"):
            yield f"{label(resource)} gives every instance a public IP. Set mapPublicIpOnLaunch: false."
    elif truthy(get(resource, "associatePublicIpAddress", default=False), "associatePublicIpAddress"):
        yield f"{label(resource)} has a public IP. Set associatePublicIpAddress: false."


def check_imdsv2(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if get(resource, "metadataOptions.httpEndpoint", default="enabled") == "disabled":
        return
    tokens = get(resource, "metadataOptions.httpTokens", default=None)
    if tokens != "required":
        yield (f"{label(resource)} allows IMDSv1 (metadataOptions.httpTokens is {tokens or 'unset'}). "
               "Set metadataOptions.httpTokens: required so stolen-credential SSRF paths are closed.")


def check_eks_private(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if not resource.account_id:
        raise Unevaluable("the provider's allowedAccountIds", "is not set, so whether the account holds PHI is unknown")
    if not ctx.is_phi(resource.account_id):
        return
    prop = "endpointPublicAccess" if resource.type == "eks:index:Cluster" else "vpcConfig.endpointPublicAccess"
    public = get(resource, prop, default=None)
    if public is None or truthy(public, prop):
        state = "defaults to true" if public is None else "is true"
        yield (f"{label(resource)} in PHI account {resource.account_id}: {prop} {state}. "
               f"Set {prop}: false and endpointPrivateAccess: true; operators reach it from inside the VPC.")


# --- keys and logs ----------------------------------------------------------------------------

def check_kms_rotation(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if not truthy(get(resource, "enableKeyRotation", default=False), "enableKeyRotation"):
        yield f"{label(resource)} has rotation off. Set enableKeyRotation: true."


KMS_USE_BY_ROLE = {
    "training": ("kms:Encrypt", "kms:GenerateDataKey*", "kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey"),
    "inference": ("kms:Decrypt", "kms:DescribeKey"),
}


def check_key_policy_scope(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    """Key policies name only their own account, except the platform's release key for consumers."""
    platform = resource.account_id in ctx.platform_accounts
    for st in docs.parse(get(resource, "policy"), "policy"):
        if not st.allows:
            continue
        if "*" in st.aws_principals and not _scoped_to(st, resource.account_id):
            yield (f"{label(resource)} statement {st.sid} lets Principal * use the key. Name this account's "
                   "principals, or add a kms:CallerAccount condition for this account.")
            continue
        for principal in st.aws_principals:
            account = docs.account_of(principal)
            if principal == "*" or account == resource.account_id:
                continue
            role = ctx.role_of(account) if account else None
            allowed = KMS_USE_BY_ROLE.get(role.value) if (platform and role is not None) else None
            if allowed is None:
                yield (f"{label(resource)} statement {st.sid} grants {principal} (account {account or '?'}). "
                       "Customer keys are limited to their own account; only the platform's release key "
                       "may name consumer accounts.")
            elif extra := docs.actions_within(st, allowed):
                yield (f"{label(resource)} statement {st.sid} grants {principal} ({role}) {', '.join(extra)}. "
                       f"A {role} account may only have {', '.join(allowed)} on the release key.")


def _scoped_to(st: docs.Statement, account: str) -> bool:
    values = st.condition_values("kms:CallerAccount") + st.condition_values("aws:PrincipalAccount")
    return bool(values) and all(v == account for v in values)


def check_trail(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    for prop in ("isMultiRegionTrail", "enableLogFileValidation"):
        if not truthy(get(resource, prop, default=False), prop):
            yield f"{label(resource)}: {prop} is off. Set {prop}: true."
    problem = cmk_problem(resource, "kmsKeyId", "log files")
    if problem:
        yield problem


def check_role_trust(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    """Trust: never ``*``; consumer accounts trust only a platform role with an external id;
    the platform trusts only the fleet's consumer accounts."""
    statements = docs.parse(get(resource, "assumeRolePolicy"), "assumeRolePolicy")
    consumer = resource.account_id in ctx.consumer_accounts
    for st in statements:
        if not st.allows:
            continue
        for principal in st.aws_principals:
            account = docs.account_of(principal)
            if principal == "*" or account is None:
                yield (f"{label(resource)} trust statement {st.sid} lets {principal!r} assume the role. "
                       "Name one role ARN of the platform account (with an sts:ExternalId condition).")
                continue
            if account == resource.account_id:
                continue
            if consumer:
                if not ctx.platform_accounts:
                    continue  # no platform stack in the plan: fleet.platform-in-plan says so
                if account not in ctx.platform_accounts or not docs.ROLE_ARN.match(principal):
                    yield (f"{label(resource)} in {resource.role or resource.account_id} trusts {principal}. "
                           "Consumer accounts are assumable only by the platform account's automation role "
                           "(a role ARN, not an account root).")
                elif not st.condition_values("sts:ExternalId"):
                    yield (f"{label(resource)} trusts {principal} without an sts:ExternalId condition. Add "
                           'Condition {"StringEquals": {"sts:ExternalId": <external id>}}.')
            elif account not in ctx.consumer_accounts:
                yield (f"{label(resource)} trusts {principal} of account {account}, outside the fleet. "
                       "The platform account is assumable only from its consumer accounts.")


RULES: tuple[Rule, ...] = (
    Rule(id="s3.bucket-sse-kms", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Every S3 bucket is encrypted with SSE-KMS under a customer managed key.",
         fix="attach a BucketServerSideEncryptionConfiguration with sseAlgorithm aws:kms and a CMK",
         types=("aws:s3/bucket:Bucket", *SSE_TYPES), check_resource=check_bucket_sse),
    Rule(id="s3.public-access-block", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Every bucket's public access block has all four settings on.",
         fix="set blockPublicAcls, blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets to true",
         types=("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",),
         check_resource=check_public_access_block),
    Rule(id="s3.tls-only", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Every bucket policy denies requests without TLS.",
         fix="add a Deny statement on aws:SecureTransport false",
         types=("aws:s3/bucketPolicy:BucketPolicy",), check_resource=check_tls_only),
    Rule(id="s3.no-public-grants", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="No bucket policy allows Principal * and no bucket carries a public canned ACL.",
         fix="name the principals; use the private ACL",
         types=("aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucket:Bucket",
                "aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"),
         check_resource=check_no_public_grants),
    Rule(id="s3.account-public-access-block", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="The account-level S3 public access block has all four settings on.",
         fix="set all four flags of s3.AccountPublicAccessBlock to true",
         types=("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",),
         check_resource=check_account_public_access_block),
    Rule(id="fsx.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="FSx file systems are encrypted with a customer managed key.",
         fix="set kmsKeyId to a CMK", types=("aws:fsx/lustreFileSystem:LustreFileSystem",
                                             "aws:fsx/openZfsFileSystem:OpenZfsFileSystem",
                                             "aws:fsx/ontapFileSystem:OntapFileSystem",
                                             "aws:fsx/windowsFileSystem:WindowsFileSystem"),
         check_resource=cmk_check("kmsKeyId", "the file system")),
    Rule(id="logs.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="CloudWatch log groups are encrypted with a customer managed key.",
         fix="set kmsKeyId to a CMK whose policy lets logs.<region>.amazonaws.com use it",
         types=("aws:cloudwatch/logGroup:LogGroup",), check_resource=cmk_check("kmsKeyId", "log events")),
    Rule(id="sns.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="SNS topics are encrypted with a customer managed key.",
         fix="set kmsMasterKeyId to a CMK", types=("aws:sns/topic:Topic",),
         check_resource=cmk_check("kmsMasterKeyId", "messages")),
    Rule(id="dynamodb.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="DynamoDB tables are encrypted with a customer managed key.",
         fix="set serverSideEncryption {enabled: true, kmsKeyArn: CMK}", types=("aws:dynamodb/table:Table",),
         check_resource=check_dynamodb),
    Rule(id="secretsmanager.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Secrets Manager secrets are encrypted with a customer managed key.",
         fix="set kmsKeyId to a CMK", types=("aws:secretsmanager/secret:Secret",),
         check_resource=cmk_check("kmsKeyId", "the secret")),
    Rule(id="eks.secrets-cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="EKS clusters envelope-encrypt Kubernetes secrets with a customer managed key.",
         fix="set the cluster's encryption config to secrets with a CMK",
         types=("aws:eks/cluster:Cluster", "eks:index:Cluster"), check_resource=check_eks_secrets),
    Rule(id="ebs.default-encryption", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Default EBS encryption is on, with a customer managed default key.",
         fix="ebs.EncryptionByDefault(enabled=True) and ebs.DefaultKmsKey(key_arn=CMK)",
         types=("aws:ebs/encryptionByDefault:EncryptionByDefault", "aws:ebs/defaultKmsKey:DefaultKmsKey"),
         check_resource=check_ebs_default),
    Rule(id="ebs.volume-encryption", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="EBS volumes and launch template block devices are encrypted.",
         fix="set encrypted: true", types=("aws:ebs/volume:Volume", "aws:ec2/launchTemplate:LaunchTemplate"),
         check_resource=check_volume_encryption),
    Rule(id="ecr.cmk", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="ECR repositories are encrypted with a customer managed key.",
         fix="set encryptionConfigurations to KMS with a CMK", types=("aws:ecr/repository:Repository",),
         check_resource=check_ecr),
    Rule(id="ec2.no-world-ingress", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="No security group admits 0.0.0.0/0 or ::/0.",
         fix="admit only security groups or VPC CIDRs",
         types=("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/securityGroupRule:SecurityGroupRule",
                "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
         check_resource=check_world_ingress),
    Rule(id="ec2.no-public-ip", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="No launch template, instance or subnet hands out public IPs.",
         fix="associatePublicIpAddress / mapPublicIpOnLaunch false",
         types=("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", "aws:ec2/subnet:Subnet"),
         check_resource=check_public_ip),
    Rule(id="ec2.imdsv2", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Launch templates and instances require IMDSv2 tokens.",
         fix="metadataOptions.httpTokens: required",
         types=("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"), check_resource=check_imdsv2),
    Rule(id="eks.private-endpoint", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="EKS API endpoints in a PHI account are private only.",
         fix="endpointPublicAccess: false, endpointPrivateAccess: true",
         types=("aws:eks/cluster:Cluster", "eks:index:Cluster"), check_resource=check_eks_private),
    Rule(id="kms.rotation", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Customer managed keys rotate yearly.", fix="enableKeyRotation: true",
         types=("aws:kms/key:Key",), check_resource=check_kms_rotation),
    Rule(id="kms.key-policy-scope", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Key policies name only their own account; the platform's release key may grant "
                 "training encrypt/decrypt and inference decrypt.",
         fix="remove the foreign principal, or narrow its actions",
         types=("aws:kms/key:Key", "aws:kms/keyPolicy:KeyPolicy"), check_resource=check_key_policy_scope),
    Rule(id="cloudtrail.trail-config", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Trails are multi-region, validate log files and encrypt them with a CMK.",
         fix="isMultiRegionTrail, enableLogFileValidation true; kmsKeyId a CMK",
         types=("aws:cloudtrail/trail:Trail",), check_resource=check_trail),
    Rule(id="iam.role-trust", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="No role trusts *; consumer roles trust only a platform role ARN with an external id; "
                 "the platform trusts only its consumer accounts.",
         fix="narrow the trust policy's Principal and add sts:ExternalId",
         types=("aws:iam/role:Role",), check_resource=check_role_trust),
)


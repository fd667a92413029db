"""Key policies that create in a fresh account and let the services in that need them. Stack
scope. Pure: no pulumi import."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails.linking import companions, identities, of_type
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Violation,
    get,
)

KEY = "aws:kms/key:Key"
SERVICE_LINKED_ROLE = "aws:iam/serviceLinkedRole:ServiceLinkedRole"
DRA = "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation"
BUCKET = "aws:s3/bucket:Bucket"
SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
       "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
SLR_PATH = ":role/aws-service-role/"
FSX_S3_SERVICE = "s3.data-source.lustre.fsx.amazonaws.com"
FSX_NEEDS = ("kms:Decrypt", "kms:GenerateDataKey")


def _service_of(role_arn: str) -> str:
    return role_arn.split(SLR_PATH, 1)[1].split("/", 1)[0]


def check_principals_exist(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    created = {get(r, "awsServiceName", default="") for r in of_type(resources, SERVICE_LINKED_ROLE)}
    for key in of_type(resources, KEY):
        for st in docs.parse(get(key, "policy"), "policy"):
            for principal in st.aws_principals:
                if SLR_PATH in principal and _service_of(principal) not in created:
                    yield Violation(resource=key.name, urn=key.urn, message=(
                        f"Key {key.name} statement {st.sid} names the service-linked role {principal} as its "
                        "Principal; in a fresh account it does not exist yet and KMS rejects the policy. Match "
                        "it with an aws:PrincipalArn condition instead (key_policies.autoscaling_statements), or "
                        f"create iam.ServiceLinkedRole(aws_service_name={_service_of(principal)!r}) in this "
                        "stack and depend on it."))


def _admits_fsx(st: docs.Statement) -> bool:
    named = any(FSX_S3_SERVICE in p for p in st.aws_principals)
    conditioned = "*" in st.aws_principals and any(
        FSX_S3_SERVICE in v for v in st.condition_values("aws:PrincipalArn"))
    return st.allows and (named or conditioned) and all(
        any(docs.action_matches(a, needed) for a in st.actions) for needed in FSX_NEEDS)


def check_dra_key(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    buckets = {b.outputs.get("bucket") or b.inputs.get("bucket"): b for b in of_type(resources, BUCKET)}
    keys = of_type(resources, KEY)
    for dra in of_type(resources, DRA):
        path = get(dra, "dataRepositoryPath")
        bucket = buckets.get(path.removeprefix("s3://").split("/", 1)[0]) if isinstance(path, str) else None
        if bucket is None:
            continue  # a bucket of another stack: fleet.phi-dra-same-account judges that
        key_arns = {get(c, "rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId", default="")
                    for c in companions(resources, bucket, "bucket", *SSE)}
        for key in (k for k in keys if identities(k) & key_arns):
            if not any(_admits_fsx(st) for st in docs.parse(get(key, "policy"), "policy")):
                yield Violation(resource=key.name, urn=key.urn, message=(
                    f"Key {key.name} encrypts bucket {bucket.name}, the data repository of {dra.name}, but no "
                    "statement lets the file system's FSx S3 service-linked role (AWSServiceRoleForFSxS3Access_"
                    "<fs-id>) decrypt and generate data keys: import and export would be denied. Add "
                    "key_policies.fsx_data_repository_statement (KeyService.FSX_DATA_REPOSITORY)."))


RULES: tuple[Rule, ...] = (
    Rule(id="kms.principals-exist", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="A key policy names a service-linked role as Principal only if the stack creates it.",
         fix="an aws:PrincipalArn condition, or iam.ServiceLinkedRole created first and depended on",
         check_stack=check_principals_exist),
    Rule(id="fsx.dra-key-grants", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="The key of a data repository's bucket admits the FSx S3 service-linked role.",
         fix="add key_policies.fsx_data_repository_statement to the bucket's key",
         check_stack=check_dra_key),
)

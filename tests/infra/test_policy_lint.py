"""Every policy document the program renders (IAM identity and trust policies, key, bucket, topic,
queue, repository, secret, endpoint and registry policies: any input that is a JSON policy)
passes parliament, an IAM policy linter, with no finding other than the justified ones below.

Each justification names the document kind and the finding it covers; a new kind of finding, or
the same finding on another kind of document, fails the test."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # parliament 1.6 imports the deprecated pkg_resources
    from parliament import analyze_policy_string


@dataclass(frozen=True)
class Justified:
    """A parliament finding accepted on one kind of document, and why."""

    issue: str
    kind: str
    """``trust``, ``key``, ``endpoint``, ``repository`` or ``registry`` (see :func:`kind_of`)."""
    detail: str
    """A substring of the finding's detail that must be present ("" for any)."""
    why: str


JUSTIFIED = (
    Justified("MALFORMED", "trust", "neither Resource nor NotResource",
              "a role's trust policy has no Resource element (the IAM grammar for trust policies); "
              "parliament reads it as an identity policy"),
    Justified("RESOURCE_STAR", "key", "",
              'in a key policy "Resource": "*" means this key and nothing else (AWS KMS key policies)'),
    Justified("RESOURCE_STAR", "endpoint", "",
              "a VPC endpoint policy scopes by principal account; the services behind it decide resources"),
    Justified("UNKNOWN_CONDITION_FOR_ACTION", "key", "kms:EncryptionContext:",
              "the statements CloudWatch Logs and CloudTrail document for their CMKs put kms:Describe* "
              "under the same encryption-context condition (AWS docs, encrypt-log-data-kms and "
              "create-kms-key-policy-for-cloudtrail)"),
    Justified("MALFORMED", "repository", "neither Resource nor NotResource",
              "an ECR repository policy applies to its repository and has no Resource element (ECR user guide)"),
    Justified("RESOURCE_MISMATCH", "registry", "ecr:BatchImportUpstreamImage",
              "parliament 1.6.4 knows no resource type for ecr:BatchImportUpstreamImage; AWS's pull-through "
              "cache registry policy scopes it to the cached repositories' ARNs (ECR user guide, private "
              "registry permissions)"),
    Justified("UNKNOWN_ACTION", "other", "InterruptibleCapacityReservationAllocation",
              "parliament 1.6's action list predates EC2's interruptible capacity reservations "
              "(Create/UpdateInterruptibleCapacityReservationAllocation, EC2 API reference)"),
    Justified("MISMATCHED_TYPE", "key", "ArnLike",
              "AWS documents ArnLike on kms:EncryptionContext:aws:logs:arn; parliament types the key as String"),
)


def kind_of(resource_type: str, prop: str) -> str:
    if prop == "assumeRolePolicy":
        return "trust"
    if resource_type in ("aws:kms/key:Key", "aws:kms/keyPolicy:KeyPolicy"):
        return "key"
    if resource_type == "aws:ec2/vpcEndpoint:VpcEndpoint":
        return "endpoint"
    if resource_type in ("aws:ecr/repositoryPolicy:RepositoryPolicy",
                         "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"):
        return "repository"
    if resource_type == "aws:ecr/registryPolicy:RegistryPolicy":
        return "registry"
    return "other"


def documents(value: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Every JSON policy document inside an input value (strings holding ``{"Statement": ...}``)."""
    if isinstance(value, str) and value.lstrip().startswith("{") and "Statement" in value:
        document = json.loads(value)
        if isinstance(document, dict) and "Statement" in document:
            yield path, document
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from documents(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from documents(inner, f"{path}[{i}]")


def unjustified(resource_type: str, prop: str, document: dict) -> list[str]:
    kind = kind_of(resource_type, prop)
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=False)
    out = []
    for finding in policy.findings:
        detail = str(finding.detail)
        if not any(j.issue == finding.issue and j.kind == kind and j.detail in detail for j in JUSTIFIED):
            out.append(f"{finding.issue}: {detail[:300]}")
    return out


def test_every_rendered_policy_passes_parliament(rendered_fleet):
    problems, count = [], 0
    kinds: set[str] = set()
    for stack in rendered_fleet.values():
        for resource in stack.resources:
            for prop, document in documents(dict(resource.inputs), ""):
                count += 1
                kinds.add(resource.type)
                problems += [f"{resource.urn} {prop}: {p}" for p in unjustified(resource.type, prop, document)]
    assert count > 50, count
    assert {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:kms/key:Key",
            "aws:s3/bucketPolicy:BucketPolicy", "aws:sns/topicPolicy:TopicPolicy",
            "aws:ec2/vpcEndpoint:VpcEndpoint"} <= kinds, kinds
    assert problems == [], "\n".join(problems)


def test_the_linter_catches_a_narrowed_star_only_action():
    document = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "logs:DescribeLogGroups",
        "Resource": "arn:aws:logs:us-east-1:111111111111:log-group:x"}]}
    assert any(p.startswith("RESOURCE_MISMATCH") for p in unjustified("aws:iam/rolePolicy:RolePolicy", "policy", document))

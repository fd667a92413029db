"""Reading IAM-style policy documents (IAM, trust, bucket, key policies). Pure: no pulumi import."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gpufleet.infra.guardrails.model import Unevaluable, Unknown

ACCOUNT_IN_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:(\d{12}):")
ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/.+$")


@dataclass(frozen=True, kw_only=True)
class Statement:
    """One statement, normalised: lists everywhere, principals split by kind."""

    sid: str
    effect: str
    """Allow or Deny."""
    aws_principals: tuple[str, ...]
    """AWS principals: ``*``, account ids, or ARNs."""
    service_principals: tuple[str, ...]
    federated_principals: tuple[str, ...]
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]]
    """Operator -> key -> value(s), as written."""
    has_principal: bool
    """The statement names principals (resource and trust policies do; identity policies don't)."""

    @property
    def allows(self) -> bool:
        return self.effect == "Allow"

    def condition_values(self, key: str) -> list[str]:
        """Every value any operator tests ``key`` against (keys compare case-insensitively)."""
        values: list[str] = []
        for block in self.conditions.values():
            for name, value in block.items():
                if name.lower() == key.lower():
                    values += [str(v) for v in (value if isinstance(value, list) else [value])]
        return values

    def all_condition_values(self) -> list[str]:
        values: list[str] = []
        for block in self.conditions.values():
            for value in block.values():
                values += [str(v) for v in (value if isinstance(value, list) else [value])]
        return values


def parse(document: Any, prop: str) -> list[Statement]:
    """Statements of a policy given as a JSON string or a dict; :class:`Unevaluable` if it is neither."""
    if isinstance(document, Unknown):
        raise Unevaluable(prop, "is not known yet (computed during preview)")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as err:
            raise Unevaluable(prop, f"is not valid JSON ({err.msg})") from None
    if not isinstance(document, Mapping):
        raise Unevaluable(prop, f"is {type(document).__name__}, not a policy document")
    raw = document.get("Statement")
    if raw is None:
        raise Unevaluable(f"{prop}.Statement")
    if isinstance(raw, Mapping):
        raw = [raw]
    statements = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or item.get("Effect") not in ("Allow", "Deny"):
            raise Unevaluable(f"{prop}.Statement[{i}].Effect", "is not Allow or Deny")
        principal = item.get("Principal")
        aws: list[str] = []
        service: list[str] = []
        federated: list[str] = []
        if principal == "*":
            aws = ["*"]
        elif isinstance(principal, Mapping):
            aws = _strings(principal.get("AWS"))
            service = _strings(principal.get("Service"))
            federated = _strings(principal.get("Federated"))
        elif principal is not None:
            raise Unevaluable(f"{prop}.Statement[{i}].Principal", f"is {principal!r}")
        if "NotPrincipal" in item:
            aws = ["*"]  # NotPrincipal with Allow grants everyone else: treat it as a wildcard
        conditions = item.get("Condition") or {}
        if not isinstance(conditions, Mapping):
            raise Unevaluable(f"{prop}.Statement[{i}].Condition", "is not a mapping")
        statements.append(Statement(
            sid=str(item.get("Sid", i)), effect=item["Effect"],
            aws_principals=tuple(aws), service_principals=tuple(service),
            federated_principals=tuple(federated),
            actions=tuple(_strings(item.get("Action"))), not_actions=tuple(_strings(item.get("NotAction"))),
            resources=tuple(_strings(item.get("Resource")) + _strings(item.get("NotResource"))),
            conditions={str(k): dict(v) for k, v in conditions.items() if isinstance(v, Mapping)},
            has_principal=principal is not None or "NotPrincipal" in item,
        ))
    return statements


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def account_of(principal_or_arn: str) -> str | None:
    """The account an account id, an ARN, or an ``account:root`` string belongs to; None for ``*``."""
    if ACCOUNT_ID.match(principal_or_arn):
        return principal_or_arn
    match = ACCOUNT_IN_ARN.match(principal_or_arn)
    return match.group(1) if match else None


def accounts_named(statement: Statement) -> set[str]:
    """Accounts a statement names as principals or in its conditions (aws:PrincipalAccount, ...)."""
    named = {account_of(p) for p in statement.aws_principals}
    for value in statement.all_condition_values():
        named.add(account_of(value))
        named.update(re.findall(r"(?<!\d)(\d{12})(?!\d)", value))
    return {a for a in named if a}


def action_matches(pattern: str, action: str) -> bool:
    """IAM action globbing, case-insensitive (``s3:Get*`` matches ``s3:GetObject``)."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def actions_within(statement: Statement, allowed: tuple[str, ...]) -> list[str]:
    """Actions of an Allow statement that go beyond ``allowed`` (exact names or globs of the allowed set).

    ``NotAction`` in an Allow grants everything else, so it is reported whole.
    """
    extra = [f"NotAction {a}" for a in statement.not_actions]
    for action in statement.actions:
        if not any(action_matches(a, action) if "*" not in action else _glob_within(action, a)
                   for a in allowed):
            extra.append(action)
    return extra


def _glob_within(pattern: str, allowed: str) -> bool:
    """A wildcard action is within the allowed set only if the allowed entry is the same or wider glob."""
    return "*" in allowed and fnmatch.fnmatchcase(pattern.lower(), allowed.lower())


def iter_documents(resource_type: str, inputs: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property path, document) of every policy a resource carries."""
    for prop in DOCUMENT_PROPS.get(resource_type, ()):
        if prop == "inlinePolicies":
            for i, inline in enumerate(inputs.get("inlinePolicies") or []):
                if isinstance(inline, Mapping) and inline.get("policy") is not None:
                    yield f"inlinePolicies[{i}].policy", inline["policy"]
        elif inputs.get(prop) is not None:
            yield prop, inputs[prop]


DOCUMENT_PROPS: dict[str, tuple[str, ...]] = {
    "aws:iam/role:Role": ("assumeRolePolicy", "inlinePolicies"),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/userPolicy:UserPolicy": ("policy",),
    "aws:iam/groupPolicy:GroupPolicy": ("policy",),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
    "aws:kms/key:Key": ("policy",),
    "aws:kms/keyPolicy:KeyPolicy": ("policy",),
    "aws:sns/topic:Topic": ("policy",),
    "aws:sns/topicPolicy:TopicPolicy": ("policy",),
    "aws:sqs/queue:Queue": ("policy",),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy",),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy",),
    "aws:secretsmanager/secretPolicy:SecretPolicy": ("policy",),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("policyDocument",),
    "aws:dynamodb/resourcePolicy:ResourcePolicy": ("policy",),
}
"""Resource types that carry policy documents, and where."""

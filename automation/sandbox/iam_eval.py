"""IAM policy evaluation over policy JSON, for the sandbox's enforcement and for policy tests.

Pure: no moto, no boto3. Evaluates identity policies and role trust policies the way AWS documents
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html), for
what gpufleet's rendered policies use:

- ``Effect`` Allow / Deny; an explicit Deny wins, then any Allow, else an implicit deny;
- ``Action`` / ``NotAction`` and ``Resource`` / ``NotResource`` with ``*`` and ``?`` wildcards (actions
  case-insensitive, resources case-sensitive);
- ``Principal`` of trust policies: ``"*"``, ``{"AWS": ...}`` naming an account (its 12 digits or
  ``arn:...:root``: any principal of that account) or a role (its sessions);
- ``Condition`` operators ``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike``,
  ``ArnEquals``, ``ArnLike``, ``Bool`` (each key ANDed, values of a key ORed; a key missing from the
  request makes every operator but the negated ones false, as AWS does without ``IfExists``).

An operator this module does not know raises :class:`UnsupportedCondition` rather than guessing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class UnsupportedCondition(ValueError):
    """A policy uses a condition operator the evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization question: may this principal do ``action`` on ``resource``?"""

    action: str
    """``service:Action`` (e.g. ``autoscaling:SetDesiredCapacity``)."""
    resource: str = "*"
    """The resource's ARN, or ``*`` for actions that support no resource-level permissions."""
    context: Mapping[str, str] = field(default_factory=dict)
    """Condition keys and their values in this request (``autoscaling:ResourceTag/<key>``,
    ``sts:ExternalId``, ``kms:ViaService``, ...); keys are matched case-insensitively."""
    principal: str = ""
    """The caller's ARN (an IAM user, or ``arn:aws:sts::<account>:assumed-role/<role>/<session>``)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[str, ...] = ()
    """Sids (or ``#<index>``) of the statements that allowed it."""
    denied_by: tuple[str, ...] = ()


def _wildcard(pattern: str, value: str, *, case: bool) -> bool:
    regex = fnmatch.translate(pattern)  # * and ?; [] never appears in ARNs we write
    return re.match(regex, value, 0 if case else re.IGNORECASE) is not None


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _statement_id(statement: Mapping[str, Any], index: int) -> str:
    return str(statement.get("Sid") or f"#{index}")


def _condition_holds(operator: str, key: str, expected: list[str], context: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    present = key.lower() in lowered
    actual = lowered.get(key.lower(), "")
    if operator == "StringEquals":
        return present and actual in expected
    if operator == "StringNotEquals":
        return not present or actual not in expected
    if operator in ("StringLike", "ArnLike", "ArnEquals"):
        return present and any(_wildcard(e, actual, case=True) for e in expected)
    if operator == "StringNotLike":
        return not present or not any(_wildcard(e, actual, case=True) for e in expected)
    if operator == "Bool":
        return present and actual.lower() in [e.lower() for e in expected]
    raise UnsupportedCondition(f"condition operator {operator!r} is not implemented by the sandbox evaluator")


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, str]) -> bool:
    for operator, keys in (conditions or {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, key, _listed(expected), context):
                return False
    return True


def _principal_matches(spec: Any, principal: str) -> bool:
    if spec == "*":
        return True
    if not isinstance(spec, Mapping):
        return False
    account = principal.split(":")[4] if principal.count(":") >= 5 else ""
    for entry in _listed(spec.get("AWS")):
        if entry == "*" or entry == principal:
            return True
        if entry == account or entry.endswith(f":iam::{account}:root"):
            return True
        role = re.match(r"arn:([^:]+):iam::(\d{12}):role/(?:.*/)?([^/]+)$", entry)
        session = re.match(r"arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/", principal)
        if role and session and role.groups() == session.groups():
            return True
    return False


def _applies(statement: Mapping[str, Any], request: Request, *, trust: bool) -> bool:
    if "NotAction" in statement:
        if any(_wildcard(a, request.action, case=False) for a in _listed(statement["NotAction"])):
            return False
    elif not any(_wildcard(a, request.action, case=False) for a in _listed(statement.get("Action"))):
        return False
    if trust:
        if not _principal_matches(statement.get("Principal"), request.principal):
            return False
    elif "NotResource" in statement:
        if any(_wildcard(r, request.resource, case=True) for r in _listed(statement["NotResource"])):
            return False
    elif not any(_wildcard(r, request.resource, case=True) for r in _listed(statement.get("Resource"))):
        return False
    return conditions_hold(statement.get("Condition"), request.context)


def evaluate(documents: Sequence[Mapping[str, Any]], request: Request, *, trust: bool = False) -> Decision:
    """The decision of ``documents`` (identity policies, or one trust policy with ``trust``)."""
    allowed: list[str] = []
    denied: list[str] = []
    for document in documents:
        statements = document.get("Statement") or []
        if isinstance(statements, Mapping):
            statements = [statements]
        for index, statement in enumerate(statements):
            if _applies(statement, request, trust=trust):
                (denied if statement.get("Effect") == "Deny" else allowed).append(_statement_id(statement, index))
    return Decision(allowed=bool(allowed) and not denied, allowed_by=tuple(allowed), denied_by=tuple(denied))

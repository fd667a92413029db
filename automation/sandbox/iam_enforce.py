"""IAM enforced in the sandbox server: every request authorized against the caller's policies.

moto 5.2's own switch (``INITIAL_NO_AUTH_ACTION_COUNT``) authenticates keys, but it authorizes every
action of most services against the resource ``*`` and skips condition keys it has no value for
(moto/iam/access_control.py, moto/core/responses.py ``call_action``), and it never reads a
cross-account role's trust policy. Under it the rendered policies would be denied what they
rightly allow (the journal statement names its table) and allowed what they rightly deny (the
node-group statements hold only on ASGs with the right tag). So the server authorizes here, with
what AWS itself evaluates: the request's resource ARN and condition context (``requests``), and the
caller's policies as moto holds them: an IAM user's inline and attached policies, or an assumed
role's, plus the session policy; AssumeRole also needs the target role's trust policy, evaluated in
the target's account with ``sts:ExternalId``.

Principals:
- the deployer: the sandbox's own key (``DEPLOYER_ACCESS_KEY``, what `pulumi up` would run as), and
  sessions of roles the program does not create (a provider's ``assumeRoles`` deploy role):
  unrestricted, as an administrator is;
- IAM users and sessions of roles that exist: evaluated;
- any other key: InvalidClientTokenId.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from gpufleet.automation.sandbox.iam_eval import Request, evaluate

DEPLOYER_ACCESS_KEY = "testing"
"""The key the sandbox applies the program with (control.SANDBOX_CREDENTIALS)."""

DENIAL = {"ec2": ("UnauthorizedOperation", 403), "dynamodb": ("AccessDeniedException", 400),
          "ram": ("AccessDeniedException", 403), "eks": ("AccessDeniedException", 403),
          "ssm": ("AccessDeniedException", 400), "*": ("AccessDenied", 403)}
"""What each service answers a denied call with (code, HTTP status)."""


@dataclass
class Principal:
    arn: str
    account: str
    deployer: bool = False
    policies: list[dict[str, Any]] = field(default_factory=list)
    """Identity policies (inline and attached)."""
    session_policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class Denied(Exception):
    code: str
    message: str
    status: int
    action: str = ""
    """The IAM action refused (a DynamoDB call may be refused its table key's kms:Decrypt)."""


def _document(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    return json.loads(unquote(text)) if isinstance(text, str) and text.startswith("%") else json.loads(text)


def _role_policies(iam: Any, role_name: str) -> list[dict[str, Any]]:
    role = iam.get_role(role_name)
    docs = [_document(doc) for doc in role.policies.values()]
    for policy in role.managed_policies.values():
        version = next(v for v in policy.versions if v.is_default)
        docs.append(_document(version.document))
    return docs


def _user_policies(iam: Any, user: Any) -> list[dict[str, Any]]:
    docs = [_document(doc) for doc in user.policies.values()]
    for policy in user.managed_policies.values():
        version = next(v for v in policy.versions if v.is_default)
        docs.append(_document(version.document))
    return docs


def principal_of(access_key: str, session_token: str | None, account: str, partition: str = "aws") -> Principal:
    """Who signed with ``access_key`` (found in ``account``, as the extension mapped it)."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    if access_key == DEPLOYER_ACCESS_KEY:
        return Principal(arn=f"arn:{partition}:iam::{account}:root", account=account, deployer=True)
    iam = iam_backends[account][partition]
    for session in sts_backends[account][partition].assumed_roles:
        if session.access_key_id == access_key:
            if session_token != session.session_token:
                raise Denied("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
            role_name = session.role_arn.rsplit("/", 1)[-1]
            arn = f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{session.session_name}"
            if not any(r.name == role_name for r in iam.roles.values()):
                return Principal(arn=arn, account=account, deployer=True)
            return Principal(arn=arn, account=account, policies=_role_policies(iam, role_name),
                             session_policy=_document(session.policy) if session.policy else None)
    for user in iam.users.values():
        if any(key.access_key_id == access_key for key in user.access_keys):
            return Principal(arn=user.arn, account=account, policies=_user_policies(iam, user))
    raise Denied("InvalidClientTokenId", "The security token included in the request is invalid.", 403)


def principal_arn(arn: str) -> str:
    """``aws:PrincipalArn`` as AWS sets it: a role session's is its role's ARN, a user's its own."""
    parts = arn.split(":")
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{parts[5].split('/')[1]}"
    return arn


def trust_allows(role_arn: str, caller: Principal, external_id: str | None) -> bool:
    """The target role's trust policy, evaluated in its own account."""
    from moto.iam.models import iam_backends

    parts = role_arn.split(":")
    if len(parts) < 6:
        return False
    try:
        role = iam_backends[parts[4]][parts[1]].get_role(parts[5].rsplit("/", 1)[-1])
    except Exception:  # noqa: BLE001 - no such role: nothing to trust the caller
        return False
    context = {"aws:PrincipalArn": principal_arn(caller.arn)}
    if external_id:
        context["sts:ExternalId"] = external_id
    request = Request(action="sts:AssumeRole", resource=role_arn, context=context, principal=caller.arn)
    return evaluate([_document(role.assume_role_policy_document)], request, trust=True).allowed


def authorize(caller: Principal, requests: list[Request], service: str,
              external_id: str | None = None) -> None:
    """Raise :class:`Denied` unless ``caller`` may make every request (as AWS answers it)."""
    if caller.deployer:
        return
    for request in requests:
        if request.action == "sts:GetCallerIdentity":
            continue  # AWS answers it whatever the policies say
        allowed = evaluate(caller.policies, request).allowed
        if allowed and caller.session_policy is not None:
            allowed = evaluate([caller.session_policy], request).allowed
        if allowed and request.action == "sts:AssumeRole":
            allowed = trust_allows(request.resource, caller, external_id)
        if not allowed:
            code, status = DENIAL.get(service) or DENIAL["*"]
            on = f" on resource: {request.resource}" if request.resource != "*" else ""
            raise Denied(code, f"User: {caller.arn} is not authorized to perform: {request.action}{on}", status,
                         request.action)


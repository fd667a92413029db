"""boto3 access to every account of the fleet, and AWS errors turned into gpufleet errors.

One session per account, entered through the chain used in production. The base session is the
caller's: a named profile or the standard credential chain (environment, shared files, SSO,
instance role), the operator's own principal in the platform account. The platform stack's session
is the platform's automation role (its ``automation_role_arn``), assumed with the base session; a
consumer's session is its ``operator_role_arn`` (with its external id), assumed with the automation
role's session, the one principal that role trusts. An inventory without an automation role (an
older one, or a single account) assumes operator roles with the base session and uses the base
session in the platform account. Each role is assumed once (session name ``gpufleet-<operation>``),
cached, and renewed by botocore before its credentials expire.

With ``identity="instance"`` (the healer on a Slurm head, ``--identity instance``) the base session
is the instance's own role (``gpufleet-slurm-head``), the stack is the consumer stack of that
role's account, and nothing goes through the automation role: the stack's operator role and the
platform's ``gpufleet-healer-journal`` role (the journal and its leases only) are each assumed with
the instance's session, and any other stack is refused (BadInputError) before a call is made.

Clients use adaptive retries; ``max_attempts`` counts every attempt, the first included, as
``AWS_MAX_ATTEMPTS`` does (botocore's ``max_attempts`` key counts retries only, hence
``total_max_attempts``): from the caller, else ``AWS_MAX_ATTEMPTS``, else 8.
Endpoints are never passed here: botocore reads ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` itself, which is how the sandbox is reached.

Every call through ``AwsAccess.client`` raises ``AwsCallError`` (an ``AwsError``, exit code 3) with
a message naming the stack, account, service, operation and AWS error code, and a hint; error
codes a caller expects as control flow (e.g. ``ConditionalCheckFailedException``) can be passed
through untouched as botocore ``ClientError``. This module is the one translator: callers that
hold a plain boto3 client, or want to add what a failure means to them (the rebalancer: resume
or cancel), wrap their calls in :func:`translated`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from gpufleet.automation.inventory import FleetInventory, StackSource
from gpufleet.infra.baseline_policies import HEALER_JOURNAL_ROLE_NAME, role_arn
from gpufleet.infra.contract import StackOutputs
from gpufleet.infra.errors import AwsCallError, BadInputError, GpufleetError
from gpufleet.infra.key_policies import partition_of

DEFAULT_MAX_ATTEMPTS = 8
ASSUME_ROLE_SECONDS = 3600
IDENTITIES = ("caller", "instance")
"""caller: the operator's or CI's principal, through the automation role; instance: a Slurm head's
instance role, its own stack and the journal only."""
SESSION_NAME = re.compile(r"[^\w+=,.@-]")

THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "RequestThrottled", "SlowDown", "EC2ThrottledException", "LimitExceededException",
})
ACCESS = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "AuthFailure", "InvalidAccessKeyId",
})



def _hint(code: str, status: int | None, account: StackOutputs | None) -> str | None:
    if code in THROTTLING:
        return "AWS throttled the calls even after adaptive retries; wait and run again, or raise AWS_MAX_ATTEMPTS"
    if code in ACCESS:
        if account is not None and account.operator_role_arn:
            return (f"check that {account.operator_role_arn} trusts the caller's account and expects external id "
                    f"{account.external_id!r}, and that the caller's credentials are valid (aws sts get-caller-identity)")
        return "check the credentials in use (AWS_PROFILE, `aws sts get-caller-identity`) and their permissions"
    if code == "InsufficientInstanceCapacity":
        return "the capacity reservation or the AZ has no room for more instances; see `gpufleet status`"
    if status is not None and status >= 500:
        return "AWS reported an internal error; the call may be retried safely later"
    return None


def translate(error: Exception, *, stack: str = "", account: StackOutputs | None = None,
              service: str = "", operation: str = "", subject: str = "") -> AwsCallError | BadInputError:
    """The gpufleet error for a botocore failure (ClientError, parse, connection, credentials).
    ``subject``: what the call was about (an Auto Scaling group, the journal table), if known."""
    where = f"{stack} account {account.account_id}" if account else (stack or "AWS")
    if subject:
        where = f"{where} ({subject})"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        meta = error.response.get("ResponseMetadata", {})
        code, status = str(info.get("Code", "Unknown")), meta.get("HTTPStatusCode")
        retries = int(meta.get("RetryAttempts", 0))
        after = f" (after {retries} retries)" if retries else ""
        operation = error.operation_name or operation
        return AwsCallError(f"{service} {operation} in {where} failed: {code}: {info.get('Message', '')}{after}",
                            _hint(code, status, account), aws_code=code, operation=operation, service=service,
                            stack=stack, http_status=status, retries=retries)
    if isinstance(error, ResponseParserError):
        return AwsCallError(f"{service} {operation} in {where}: the endpoint's response could not be parsed ({error})",
                            "if AWS_ENDPOINT_URL points at an emulator, it may not implement this call; "
                            "unset AWS_ENDPOINT_URL* to use AWS itself", operation=operation, service=service, stack=stack)
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        hint = (f"AWS_ENDPOINT_URL={endpoint}: is the sandbox running? `gpufleet sandbox status`" if endpoint
                else "check the network path to AWS (proxy, VPC endpoints)")
        return AwsCallError(f"{service} {operation} in {where}: cannot reach the endpoint ({error})", hint,
                            operation=operation, service=service, stack=stack)
    if isinstance(error, ProfileNotFound):
        return BadInputError(f"AWS profile not found: {error}", "list profiles with `aws configure list-profiles`")
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AwsCallError(f"no AWS credentials for {where}: {error}",
                            "set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                            operation=operation, service=service, stack=stack)
    if isinstance(error, NoRegionError):
        return BadInputError(f"no AWS region for {where}", "the inventory names each account's region; set AWS_DEFAULT_REGION otherwise")
    return AwsCallError(f"{service} {operation} in {where} failed: {error}", None, operation=operation,
                        service=service, stack=stack)


TRANSLATED = (BotoCoreError, ClientError, ResponseParserError)


def with_hint(error: GpufleetError, hint: str | None) -> GpufleetError:
    """``error`` with the caller's advice after its own (what the call's failure means there)."""
    if hint and hint not in (error.hint or ""):
        error.hint = f"{error.hint}; {hint}" if error.hint else hint
    return error


@contextlib.contextmanager
def translated(*, stack: str = "", account: StackOutputs | None = None, service: str = "", operation: str = "",
               subject: str = "", hint: str | None = None, passthrough: Iterable[str] = ()) -> Iterator[None]:
    """AWS calls inside raise gpufleet errors: a botocore failure through :func:`translate`, and an
    AwsCallError that an :class:`AwsClient` already raised as it is; both get ``hint`` added.
    Error codes in ``passthrough`` stay botocore ClientError (control flow, e.g. a lost
    compare-and-set)."""
    try:
        yield
    except AwsCallError as error:
        with_hint(error, hint)
        raise
    except TRANSLATED as error:
        if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in set(passthrough):
            raise
        raise with_hint(translate(error, stack=stack, account=account, service=service, operation=operation,
                                  subject=subject), hint) from error


class _Provider(CredentialProvider):
    """Hands botocore our refreshable assumed-role credentials, ahead of the standard chain."""

    METHOD = "gpufleet-assume-role"
    CANONICAL_NAME = "gpufleet-assume-role"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


class AwsClient:
    """A boto3 client whose calls (and paginated calls) raise gpufleet errors.

    ``raw`` is the boto3 client itself; error codes in ``passthrough`` stay ClientError.
    """

    def __init__(self, client: Any, *, stack: str, account: StackOutputs | None, service: str,
                 passthrough: frozenset[str] = frozenset()) -> None:
        self.raw = client
        self._stack, self._account, self._service, self._passthrough = stack, account, service, passthrough

    def errors(self, operation: str = "") -> contextlib.AbstractContextManager[None]:
        return translated(stack=self._stack, account=self._account, service=self._service, operation=operation,
                          passthrough=self._passthrough)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name == "get_paginator":
            return lambda op: _Paginator(attr(op), self, op)
        if name.startswith("_") or not callable(attr) or name in ("can_paginate", "get_waiter", "close"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.errors(name):
                return attr(*args, **kwargs)

        return call


class _Paginator:
    def __init__(self, paginator: Any, client: AwsClient, operation: str) -> None:
        self._paginator, self._client, self._operation = paginator, client, operation

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        with self._client.errors(self._operation):
            yield from self._paginator.paginate(**kwargs)


class AwsAccess:
    """Sessions and clients for every account of an inventory (thread-safe, cached)."""

    def __init__(self, inventory: FleetInventory, *, operation: str = "cli", profile: str | None = None,
                 max_attempts: int | None = None, base_session: boto3.Session | None = None,
                 role_duration_s: int = ASSUME_ROLE_SECONDS, identity: str = "caller",
                 own_stack: str | None = None) -> None:
        if identity not in IDENTITIES:
            raise BadInputError(f"--identity {identity!r}: expected one of {', '.join(IDENTITIES)}")
        self.inventory = inventory
        self.identity = identity
        self._own_stack = own_stack
        self.role_duration_s = role_duration_s
        self.session_name = SESSION_NAME.sub("-", f"gpufleet-{operation}")[:64]
        self.profile = profile
        attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
        self.config = Config(retries={"mode": "adaptive", "total_max_attempts": attempts},
                             connect_timeout=5, read_timeout=60, user_agent_extra="gpufleet")
        self._base = base_session
        self._sessions: dict[str, boto3.Session] = {}
        self._lock = threading.RLock()

    def base_session(self) -> boto3.Session:
        if self._base is None:
            try:
                self._base = boto3.Session(profile_name=self.profile)
            except ProfileNotFound as error:
                raise translate(error) from None
        return self._base

    def account(self, stack: str) -> StackOutputs:
        """The stack's outputs: its account, region, and the operator role to assume there."""
        try:
            return self.inventory.stacks[stack]
        except KeyError:
            raise BadInputError(f"no stack {stack!r} in the inventory ({self.inventory.source})",
                                f"known stacks: {', '.join(sorted(self.inventory.stacks))}") from None

    def own_stack(self) -> str:
        """With the instance identity: the consumer stack of the instance role's account."""
        with self._lock:
            if self._own_stack is None:
                # A head's environment names no region (boto3 reads none from the IMDS): any of the fleet's answers.
                base = self.base_session()
                sts = AwsClient(base.client("sts", region_name=base.region_name or self.inventory.platform.region,
                                            config=self.config), stack="", account=None, service="sts")
                account = sts.get_caller_identity()["Account"]
                stacks = [n for n, o in sorted(self.inventory.stacks.items())
                          if o.account_id == account and n != self.inventory.platform_stack]
                if len(stacks) != 1:
                    raise BadInputError(
                        f"--identity instance: the instance's account {account} is the account of "
                        f"{len(stacks)} consumer stacks in {self.inventory.source} ({', '.join(stacks) or 'none'})",
                        "run the healer on the Slurm head of a stack of this inventory")
                self._own_stack = stacks[0]
            return self._own_stack

    def _instance_session(self, stack: str, account: StackOutputs) -> boto3.Session:
        own = self.own_stack()
        if stack == own:
            if not account.operator_role_arn:
                raise BadInputError(f"stack {stack!r} exports no operator role ({self.inventory.source})",
                                    "refresh the inventory: gpufleet inventory collect")
            return self._assumed(stack, account, account.operator_role_arn, None, self.base_session())
        if stack == self.inventory.platform_stack:
            journal = role_arn(partition_of(account.region), account.account_id, HEALER_JOURNAL_ROLE_NAME)
            return self._assumed(stack, account, journal, None, self.base_session())
        raise BadInputError(f"--identity instance: the healer on {own}'s head reaches only its own stack, not {stack!r}",
                            "run each stack's healer on its own head")

    def session(self, stack: str) -> boto3.Session:
        """The session for a stack's account: the operator role's (consumers), the automation
        role's (the platform), or the caller's own; with the instance identity, see the module."""
        account = self.account(stack)
        with self._lock:
            if stack not in self._sessions and self.identity == "instance":
                self._sessions[stack] = self._instance_session(stack, account)
            if stack not in self._sessions:
                hub = self._automation_stack()
                if account.operator_role_arn:
                    via = self.session(hub) if hub and hub != stack else self.base_session()
                    self._sessions[stack] = self._assumed(stack, account, account.operator_role_arn,
                                                          account.external_id, via)
                elif account.automation_role_arn:
                    self._sessions[stack] = self._assumed(stack, account, account.automation_role_arn, None,
                                                          self.base_session())
                else:
                    self._sessions[stack] = self.base_session()
            return self._sessions[stack]

    def _automation_stack(self) -> str | None:
        """The stack whose automation role the consumers' operator roles trust (the platform)."""
        return next((name for name, out in sorted(self.inventory.stacks.items()) if out.automation_role_arn), None)

    def _assumed(self, stack: str, account: StackOutputs, role_arn: str, external_id: str | None,
                 via: boto3.Session) -> boto3.Session:
        sts = AwsClient(via.client("sts", region_name=account.region, config=self.config),
                        stack=stack, account=account, service="sts")

        def fetch() -> dict[str, str]:
            kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": self.session_name,
                                      "DurationSeconds": self.role_duration_s}
            if external_id:
                kwargs["ExternalId"] = external_id
            creds = sts.assume_role(**kwargs)["Credentials"]
            return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                    "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method=_Provider.METHOD)
        core = botocore.session.get_session()
        core.get_component("credential_provider").insert_before("env", _Provider(credentials))
        return boto3.Session(botocore_session=core, region_name=account.region)

    def state_client(self, source: StackSource) -> Any:
        """An S3 client of the caller's own session, for a stack state in an S3 backend (else None)."""
        if source.kind != "s3":
            return None
        return self.base_session().client("s3", config=self.config)

    def client(self, stack: str, service: str, *, passthrough: Iterable[str] = ()) -> AwsClient:
        """A client for ``service`` in the stack's account and region."""
        account = self.account(stack)
        session = self.session(stack)
        codes = frozenset(passthrough)
        try:
            raw = session.client(service, region_name=account.region, config=self.config)
        except TRANSLATED as error:
            raise translate(error, stack=stack, account=account, service=service) from None
        return AwsClient(raw, stack=stack, account=account, service=service, passthrough=frozenset(codes))

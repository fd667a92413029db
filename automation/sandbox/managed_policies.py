"""AWS managed policies (``arn:aws:iam::aws:policy/...``) in every emulated account, on demand.

In AWS every account can attach AWS managed policies. moto loads its copy of them (about 1,600)
into each account only with ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``, which costs every account's IAM
backend a second; without it, AttachRolePolicy of an AWS managed policy fails with NoSuchEntity.
``install`` makes the server add the one policy asked for, from moto's bundled data, the first time
an account attaches or reads it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

AWS_POLICY_PREFIX = "arn:aws:iam::aws:policy"


@functools.cache
def _bundled() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


def ensure(backend: Any, policy_arn: str) -> None:
    """Add the AWS managed policy ``policy_arn`` to ``backend`` (an IAMBackend) if AWS has it."""
    if not policy_arn.startswith(AWS_POLICY_PREFIX + "/") or policy_arn in backend.managed_policies:
        return
    from moto.iam.models import AWSManagedPolicy

    name = policy_arn.rsplit("/", 1)[-1]
    data = _bundled().get(name)
    if data is None:
        return
    policy = AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, data)
    if policy.arn == policy_arn:
        backend.managed_policies[policy.arn] = policy


def install() -> None:
    """Patch moto's IAM backend in this (server) process; idempotent."""
    from moto.iam.models import IAMBackend

    if getattr(IAMBackend, "_gpufleet_managed_policies", False):
        return
    attach, get = IAMBackend.attach_role_policy, IAMBackend.get_policy

    def attach_role_policy(self: Any, policy_arn: str, role_name: str) -> None:
        ensure(self, policy_arn)
        return attach(self, policy_arn, role_name)

    def get_policy(self: Any, policy_arn: str) -> Any:
        ensure(self, policy_arn)
        return get(self, policy_arn)

    IAMBackend.attach_role_policy = attach_role_policy  # type: ignore[method-assign]
    IAMBackend.get_policy = get_policy  # type: ignore[method-assign]
    IAMBackend._gpufleet_managed_policies = True  # type: ignore[attr-defined]

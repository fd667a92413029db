"""A stack's account, entered the way the stack's AWS provider enters it.

The provider's rendered settings say how: STS AssumeRole of ``assumeRoles[0]`` (role and session
name), GetCallerIdentity (the provider validates its credentials), which must name an account in
``allowedAccountIds``; ``defaultTags`` go on every tagged resource but Auto Scaling groups.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import boto3

from gpufleet.infra.rendered import RenderedStack


class AccountError(RuntimeError):
    """The render's provider cannot enter the account it names."""


class Account:
    """One stack's account, entered as its provider enters it; its clients made at once."""

    def __init__(self, base: boto3.Session, endpoint: str, stack: RenderedStack, services: Iterable[str]) -> None:
        provider = next((r for r in stack.resources if r.type == "pulumi:providers:aws"), None)
        if provider is None:
            raise AccountError(f"{stack.spec.name}: the render has no aws provider")
        self.stack = stack
        self.base, self.endpoint = base, endpoint
        self.region = str(provider.inputs.get("region") or stack.spec.region)
        self.default_tags: dict[str, str] = dict(_json(provider.inputs.get("defaultTags"), {}).get("tags") or {})
        roles = _json(provider.inputs.get("assumeRoles"), [])
        allowed = [str(a) for a in _json(provider.inputs.get("allowedAccountIds"), [])]
        self.role_name = roles[0]["roleArn"].rsplit("/", 1)[-1] if roles else "the caller"
        credentials: dict[str, str] = {}
        if roles:
            role = roles[0]
            sts = base.client("sts", region_name=self.region, endpoint_url=endpoint)
            creds = sts.assume_role(RoleArn=role["roleArn"],
                                    RoleSessionName=role.get("sessionName") or "gpufleet-sandbox")["Credentials"]
            credentials = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                           "aws_session_token": creds["SessionToken"]}
        # Made up front: a boto3 session must not make clients in two threads.
        self._clients = {service: base.client(service, region_name=self.region, endpoint_url=endpoint, **credentials)
                         for service in sorted({"sts", *services})}
        self.account_id = self.client("sts").get_caller_identity()["Account"]
        if allowed and self.account_id not in allowed:
            raise AccountError(f"{stack.spec.name}: entered account {self.account_id}, but the provider allows "
                               f"only {', '.join(allowed)}")

    def client(self, service: str) -> Any:
        return self._clients[service]

    @functools.cached_property
    def zones(self) -> dict[str, str]:
        """AZ ID -> this account's AZ name (what ``aws.getAvailabilityZone`` answers here)."""
        found = self.client("ec2").describe_availability_zones()["AvailabilityZones"]
        return {zone["ZoneId"]: zone["ZoneName"] for zone in found}

    def tags(self, own: Mapping[str, Any] | None) -> dict[str, str]:
        """The provider's default tags under the resource's own (own ones win, as in the provider)."""
        return {**self.default_tags, **{str(k): str(v) for k, v in (own or {}).items()}}

    def tag_list(self, own: Mapping[str, Any] | None) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self.tags(own).items()]

    def tag_spec(self, resource_type: str, own: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        tags = self.tag_list(own)
        return [{"ResourceType": resource_type, "Tags": tags}] if tags else []


def _json(value: Any, default: Any) -> Any:
    """Provider settings arrive JSON-encoded (see RenderedResource.inputs)."""
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value

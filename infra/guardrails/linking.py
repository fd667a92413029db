"""Which resource a companion resource points at (a bucket policy at its bucket, a flow log at its VPC).

Offline, references are resolved values (ids, names, ARNs); in ``pulumi preview`` they may be
unknown, and the policy pack records the property's dependencies as URNs instead. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gpufleet.infra.guardrails.model import Resource

IDENTITY_PROPS = ("id", "bucket", "arn", "name", "keyId")


def identities(resource: Resource) -> set[str]:
    """Every string that may stand for the resource in another resource's inputs."""
    found = {resource.urn}
    for source in (resource.outputs, resource.inputs):
        for prop in IDENTITY_PROPS:
            value = source.get(prop)
            if isinstance(value, str) and value:
                found.add(value)
    return found


def refers_to(companion: Resource, prop: str, target: Resource) -> bool:
    links = getattr(companion, "links", None) or {}
    if target.urn in links.get(prop, ()):
        return True
    value: Any = companion.inputs.get(prop)
    if isinstance(value, list | tuple):
        return any(isinstance(v, str) and v in identities(target) for v in value)
    return isinstance(value, str) and value in identities(target)


def of_type(resources: Iterable[Resource], *types: str) -> list[Resource]:
    return [r for r in resources if r.type in types]


def companions(resources: Sequence[Resource], target: Resource, prop: str, *types: str) -> list[Resource]:
    return [r for r in of_type(resources, *types) if refers_to(r, prop, target)]

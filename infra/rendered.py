"""What an offline render of the stacks produces: the resource graph each stack would register.

Pure: no pulumi import. The guardrails and ``gpufleet plan`` read these; infra/offline/render.py
makes them by running stacks/__main__.py under Pulumi's mock runtime.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufleet.infra.model import StackSpec
from gpufleet.infra.offline.identity import AliasSpec


@dataclass(frozen=True, kw_only=True)
class RenderedResource:
    """One resource registration, as the engine would receive it."""

    stack: str
    """Stack name."""
    role: str
    """Role of the stack (platform, training, inference)."""
    account_id: str
    """Account the stack deploys into."""
    region: str
    """Region of the stack's provider."""
    type: str
    """Type token, e.g. ``aws:ec2/launchTemplate:LaunchTemplate`` or ``gpufleet:network:Network``."""
    name: str
    """Logical name."""
    urn: str
    """Pulumi URN (unique within the stack)."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """Inputs as the engine receives them (camelCase keys; unknowns never occur: not a preview).
    A provider's structured settings (assumeRoles, allowedAccountIds, defaultTags) arrive JSON-encoded."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """State the mocks returned (inputs plus computed ids, ARNs, names)."""
    provider: str | None = None
    """URN of the provider that manages it; None for components and the provider itself."""
    parent: str | None = None
    """URN of the parent (a component or the stack)."""
    ignore_changes: tuple[str, ...] = ()
    """Properties Pulumi leaves alone after creation (e.g. desiredCapacity, owned by the rebalancer)."""
    aliases: tuple[AliasSpec, ...] = ()
    """Where its state may be from an earlier deployment (``aliases=``): the engine looks there
    before creating it anew (infra/offline/identity.py resolves them)."""

    @property
    def is_component(self) -> bool:
        return self.type.startswith("gpufleet:")

    @property
    def id(self) -> str | None:
        value = self.outputs.get("id")
        return str(value) if value is not None else None


@dataclass(frozen=True, kw_only=True)
class RenderedStack:
    """One stack's render: its spec, every resource registered, and its exports."""

    spec: StackSpec
    """The validated stack file."""
    resources: tuple[RenderedResource, ...]
    """Every registration except the root stack, sorted by URN (registration order is not deterministic)."""
    exports: Mapping[str, Any]
    """Stack outputs, resolved."""

    def of_type(self, type_token: str) -> list[RenderedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_urn(self, urn: str) -> RenderedResource:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def children_of(self, urn: str) -> Iterator[RenderedResource]:
        return (r for r in self.resources if r.parent == urn)

"""The reference fleet rendered once, and ways to seed one mistake into it.

Two levels of mutation:
- program input: a changed stack file (StackSpec) or a changed StackReference output, rendered
  again through the real stacks/__main__.py under mocks;
- rendered graph: a resource edited, added or removed after rendering, which is what a
  hand-edited program would register (the stack files cannot express these mistakes).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpufleet.infra.findings import Finding
from gpufleet.infra.guardrails import FleetContext, evaluate
from gpufleet.infra.model import Role, StackSpec
from gpufleet.infra.offline.render import render_stack
from gpufleet.infra.rendered import RenderedResource, RenderedStack

RESULTS = pytest.StashKey[dict[str, tuple[str, bool, list[str]]]]()
"""Mutation id -> (intended rule, caught by it, rules that fired), for the score at the end."""


@dataclass
class Fleet:
    """The rendered reference fleet: specs and stacks by name."""

    specs: list[StackSpec]
    stacks: dict[str, RenderedStack]

    def resources(self) -> list[RenderedResource]:
        return [r for s in self.stacks.values() for r in s.resources]

    def spec(self, name: str) -> StackSpec:
        return next(s for s in self.specs if s.name == name)

    def findings(self, resources: Sequence[RenderedResource] | None = None,
                 specs: Sequence[StackSpec] | None = None) -> list[Finding]:
        return evaluate(self.resources() if resources is None else resources,
                        FleetContext.from_specs(self.specs if specs is None else specs))

    # -- program-input level -------------------------------------------------------------------
    def rerender(self, spec: StackSpec, platform_exports: Mapping[str, Any] | None = None) -> list[RenderedResource]:
        """The fleet with ``spec``'s stack rendered again (consumers see ``platform_exports``)."""
        outputs = None
        if spec.role is not Role.PLATFORM:
            exports = dict(self.stacks["platform"].exports)
            exports.update(platform_exports or {})
            outputs = {spec.platform_stack: exports}
        again = render_stack(spec, stack_outputs=outputs)
        return [r for r in self.resources() if r.stack != spec.name] + list(again.resources)

    # -- rendered-graph level ------------------------------------------------------------------
    def find(self, stack: str, type_token: str, contains: str = "") -> RenderedResource:
        for r in self.stacks[stack].resources:
            if r.type == type_token and contains in r.name:
                return r
        raise LookupError(f"no {type_token} with {contains!r} in {stack}: the reference fleet changed")

    def edit(self, stack: str, type_token: str, change: Callable[[dict[str, Any]], None],
             contains: str = "") -> list[RenderedResource]:
        """The fleet with one resource's inputs (and the mock's state, which mirrors them) changed."""
        target = self.find(stack, type_token, contains)
        inputs, outputs = copy.deepcopy(dict(target.inputs)), copy.deepcopy(dict(target.outputs))
        change(inputs)
        change(outputs)
        mutated = dataclasses.replace(target, inputs=inputs, outputs=outputs)
        return [mutated if r is target else r for r in self.resources()]

    def drop(self, stack: str, type_token: str, contains: str = "") -> list[RenderedResource]:
        target = self.find(stack, type_token, contains)
        return [r for r in self.resources() if r is not target]

    def add(self, stack: str, type_token: str, name: str, inputs: dict[str, Any],
            outputs: dict[str, Any] | None = None) -> list[RenderedResource]:
        spec = self.spec(stack)
        resource = RenderedResource(
            stack=stack, role=spec.role.value, account_id=spec.account_id, region=spec.region, type=type_token,
            name=name, urn=f"urn:pulumi:{stack}::gpufleet::{type_token}::{name}", inputs=inputs,
            outputs={**inputs, **(outputs or {})})
        return self.resources() + [resource]


@dataclass(frozen=True)
class Mutation:
    """One seeded misconfiguration and the rule that must catch it."""

    id: str
    rule: str
    """The rule id that must report it."""
    level: str
    """``program-input`` (stack file / StackReference output, re-rendered) or ``rendered-graph``."""
    apply: Callable[[Fleet], list[RenderedResource]]
    specs: Callable[[Fleet], list[StackSpec]] | None = None
    """The stack files the guardrails see, when the mutation changes one; default: the reference."""
    tags: tuple[str, ...] = field(default=())

"""What a guardrail rule is, what it reads, and how it says something is wrong.

Pure: no pulumi import. Rules read resources through the attributes of ``gpufleet.infra.rendered.RenderedResource``
(``stack``, ``role``, ``account_id``, ``region``, ``type``, ``name``, ``urn``, ``inputs``,
``outputs``); the policy pack adapts ``pulumi_policy`` arguments to the same shape
(:class:`ResourceView`), so one function serves ``gpufleet plan`` and ``pulumi preview``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpufleet.infra.findings import Finding
from gpufleet.infra.model import Role, StackSpec


class Severity(enum.StrEnum):
    """How a violation is enforced: mandatory blocks a deployment, advisory warns."""

    MANDATORY = "mandatory"
    ADVISORY = "advisory"

    @property
    def finding_severity(self) -> str:
        """The plan's vocabulary (``gpufleet.infra.findings.Finding``): error blocks, warning informs."""
        return "error" if self is Severity.MANDATORY else "warning"


class Resource(Protocol):
    """The shape rules read; ``gpufleet.infra.rendered.RenderedResource`` and :class:`ResourceView` have it."""

    stack: str
    role: str
    account_id: str
    region: str
    type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]


class Unknown:
    """A value Pulumi does not know yet (``pulumi preview`` of a resource not yet created)."""

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN = Unknown()


@dataclass(frozen=True, kw_only=True)
class ResourceView:
    """A resource as the policy pack sees it, in the renderer's shape."""

    stack: str
    """Stack name; in the policy pack the stack the account belongs to, or ``?``."""
    role: str
    """platform, training, inference, or ``""`` when the account is not in the fleet's stack files."""
    account_id: str
    region: str
    type: str
    """Pulumi type token, e.g. ``aws:s3/bucket:Bucket``."""
    name: str
    urn: str
    inputs: Mapping[str, Any]
    """camelCase properties as the engine receives them; unknown values are :data:`UNKNOWN`."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Property name -> URNs of the resources that property depends on (policy pack only)."""


class Unevaluable(Exception):
    """A rule could not decide: a property it needs is missing, malformed or unknown."""

    def __init__(self, prop: str, problem: str = "is missing") -> None:
        super().__init__(f"{prop} {problem}")
        self.prop = prop
        self.problem = problem


@dataclass(frozen=True, kw_only=True)
class StackFacts:
    """What the rules need to know about one stack of the fleet."""

    name: str
    role: Role
    account_id: str
    holds_phi: bool
    """Production with patient data: ``holdsPhi: true``, and every inference stack."""


@dataclass(frozen=True, kw_only=True)
class FleetContext:
    """The fleet's accounts by role, from the stack files; the rules' view of who is who."""

    stacks: tuple[StackFacts, ...]

    @classmethod
    def from_specs(cls, specs: Iterable[StackSpec]) -> FleetContext:
        specs = list(specs)
        facts = {spec.account_id: StackFacts(name=spec.name, role=spec.role, account_id=spec.account_id,
                                             holds_phi=spec.holds_phi or spec.role is Role.INFERENCE)
                 for spec in specs}
        planned_roles = {spec.role for spec in specs}
        for spec in specs:
            for role, account in spec.consumer_accounts.items():
                # A consumer named by the platform file but not in this plan still counts; one that is
                # in the plan is known by its own stack file (the platform file may be wrong).
                if role not in planned_roles and account not in facts:
                    facts[account] = StackFacts(name=f"({role})", role=role, account_id=account,
                                                holds_phi=role is Role.INFERENCE)
        return cls(stacks=tuple(facts.values()))

    def accounts_of(self, role: Role) -> frozenset[str]:
        return frozenset(s.account_id for s in self.stacks if s.role is role)

    @property
    def platform_accounts(self) -> frozenset[str]:
        return self.accounts_of(Role.PLATFORM)

    @property
    def training_accounts(self) -> frozenset[str]:
        return self.accounts_of(Role.TRAINING)

    @property
    def inference_accounts(self) -> frozenset[str]:
        return self.accounts_of(Role.INFERENCE)

    @property
    def consumer_accounts(self) -> frozenset[str]:
        return self.training_accounts | self.inference_accounts

    @property
    def phi_accounts(self) -> frozenset[str]:
        return frozenset(s.account_id for s in self.stacks if s.holds_phi)

    def is_phi(self, account_id: str) -> bool:
        return account_id in self.phi_accounts

    def role_of(self, account_id: str) -> Role | None:
        return next((s.role for s in self.stacks if s.account_id == account_id), None)


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One thing a rule found wrong with one resource (or a stack, when ``resource`` is the stack)."""

    resource: str
    """Logical name of the offending resource; the stack name for stack-wide findings."""
    message: str
    """What is wrong and how to fix it, naming the resource."""
    urn: str = ""


ResourceCheck = Callable[[Resource, FleetContext], Iterable[str]]
"""Yields messages for one resource; raises :class:`Unevaluable` when it cannot decide."""
StackCheck = Callable[[Sequence[Resource], FleetContext], Iterable[Violation]]
"""Yields violations over one stack's resources (presence and linkage of companions)."""
FleetCheck = Callable[[Sequence[Resource], FleetContext], Iterable[Violation]]
"""Yields violations over the resources of every stack together (cross-account paths)."""


class Scope(enum.StrEnum):
    RESOURCE = "resource"
    """Looks at one resource at a time: a ResourceValidationPolicy in the pack."""
    STACK = "stack"
    """Looks at one stack's resources: a StackValidationPolicy in the pack."""
    FLEET = "fleet"
    """Looks across stacks; the pack runs it on one stack with the other stacks' accounts from the stack files."""


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A guardrail: an id, a severity, what it checks, why, and how to fix a violation."""

    id: str
    """Stable id, ``<service>.<what>``; findings and the policy pack use it."""
    severity: Severity
    scope: Scope
    summary: str
    """One line: what must hold."""
    fix: str
    """How to fix a violation, in one or two sentences."""
    types: tuple[str, ...] = ()
    """Resource rules only: the Pulumi type tokens the rule reads."""
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None

    def finding(self, stack: str, resource: str, message: str) -> Finding:
        return Finding(rule=self.id, severity=self.severity.finding_severity, stack=stack,
                       resource=resource, message=message)

    def unevaluable_message(self, resource: Resource, err: Unevaluable) -> str:
        return (f"{resource.type} {resource.name}: cannot check {self.id}: {err}; set it explicitly "
                f"so the guardrail can evaluate it ({self.fix})")


def get(resource: Resource, path: str, default: Any = ...) -> Any:
    """Property ``a.b[0].c`` of the resource's inputs (what the program asked for, not what a
    provider or mock filled in); :class:`Unevaluable` if absent or unknown.

    ``default`` is returned instead of raising when the property is absent (not when unknown).
    """
    value = _walk(resource.inputs, path)
    if value is _ABSENT:
        if default is ...:
            raise Unevaluable(path)
        return default
    if isinstance(value, Unknown):
        raise Unevaluable(path, "is not known yet (computed during preview)")
    return value


_ABSENT = object()


def peek(resource: Resource, path: str) -> Any:
    """Like :func:`get`, but None when absent and :data:`UNKNOWN` passed through."""
    value = _walk(resource.inputs, path)
    return None if value is _ABSENT else value


def _walk(obj: Any, path: str) -> Any:
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(obj, Mapping):
            if part not in obj or obj[part] is None:
                return _ABSENT
            obj = obj[part]
        elif isinstance(obj, Sequence) and not isinstance(obj, str) and part.isdigit():
            index = int(part)
            if index >= len(obj):
                return _ABSENT
            obj = obj[index]
        else:
            return _ABSENT
    return obj


def truthy(value: Any, prop: str) -> bool:
    """Pulumi passes some booleans as strings (``"false"`` on launch template interfaces)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise Unevaluable(prop, f"is {value!r}, not a boolean")

"""The guardrails as a Pulumi CrossGuard policy pack: the same rule functions, adapted.

``__main__.py`` in this directory serves :func:`build_policies` to the Pulumi CLI
(``pulumi preview --policy-pack infra/guardrails``). Resource rules become ResourceValidationPolicies;
stack and fleet rules become StackValidationPolicies over the one stack being previewed. The pack
learns who is who (which account is training, which holds PHI) from the stack files in ``stacks/``,
and which account a resource is in from its provider's ``allowedAccountIds``.

A value Pulumi cannot know during preview reaches the rules as ``UNKNOWN``: a rule that needs it
reports that it cannot evaluate (never a pass); during ``pulumi up`` inputs are known and the rule
decides before the resource is created.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError
from pulumi_policy.secret import Secret

from gpufleet.infra import stackfile
from gpufleet.infra.guardrails import engine
from gpufleet.infra.guardrails.model import (
    UNKNOWN,
    FleetContext,
    ResourceView,
    Rule,
    Scope,
    Severity,
)

PACK_NAME = "gpufleet-guardrails"
STACKS_DIR_ENV = "GPUFLEET_STACKS_DIR"
"""Where the pack reads the fleet's stack files; default: stacks/ of this repository."""
DEFAULT_STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"


def enforcement(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.severity is Severity.MANDATORY else EnforcementLevel.ADVISORY


def load_context(stacks_dir: Path | None = None) -> FleetContext:
    """The fleet's accounts by role, from every ``Pulumi.<stack>.yaml``."""
    directory = stacks_dir or Path(os.environ.get(STACKS_DIR_ENV, DEFAULT_STACKS_DIR))
    return FleetContext.from_specs(stackfile.load_stack(p) for p in stackfile.discover_stacks(directory))


def plain(value: Any) -> Any:
    """A policy SDK property tree as plain dicts and lists, unknowns as ``UNKNOWN``."""
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, Mapping):
        out = {}
        for key in value:
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError:
                out[str(key)] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def provider_account(provider: PolicyProviderResource | None) -> tuple[str, str]:
    """(account id, region) the provider deploys to; ``("", "")`` when it does not pin an account."""
    if provider is None:
        return "", ""
    props = plain(provider.props)
    accounts = props.get("allowedAccountIds")
    if isinstance(accounts, str):
        try:
            accounts = json.loads(accounts)
        except json.JSONDecodeError:
            accounts = [accounts]
    region = props.get("region")
    account = accounts[0] if isinstance(accounts, list) and len(accounts) == 1 else ""
    return (account if isinstance(account, str) else ""), (region if isinstance(region, str) else "")


def view(*, resource_type: str, props: Any, urn: str, name: str, provider: PolicyProviderResource | None,
         ctx: FleetContext, links: Mapping[str, tuple[str, ...]] | None = None) -> ResourceView:
    account, region = provider_account(provider)
    facts = next((s for s in ctx.stacks if s.account_id == account), None)
    return ResourceView(
        stack=facts.name if facts else (urn.split("::")[0].split(":")[-1] if "::" in urn else "?"),
        role=facts.role.value if facts else "", account_id=account, region=region, type=resource_type,
        name=name, urn=urn, inputs=plain(props), links=dict(links or {}))


def view_of_stack_resource(resource: PolicyResource, ctx: FleetContext) -> ResourceView:
    links = {prop: tuple(dep.urn for dep in deps) for prop, deps in (resource.property_dependencies or {}).items()}
    return view(resource_type=resource.resource_type, props=resource.props, urn=resource.urn, name=resource.name,
                provider=resource.provider, ctx=ctx, links=links)


def resource_validator(rule: Rule, ctx: Callable[[], FleetContext]) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        context = ctx()
        resource = view(resource_type=args.resource_type, props=args.props, urn=args.urn, name=args.name,
                        provider=args.provider, ctx=context)
        for finding in engine.check_resource(rule, resource, context):
            report_violation(finding.message, None)
    return validate


def stack_validator(rule: Rule, ctx: Callable[[], FleetContext]) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        context = ctx()
        resources = [view_of_stack_resource(r, context) for r in args.resources
                     if not r.resource_type.startswith("pulumi:")]
        stack = next((r.stack for r in resources if r.role), resources[0].stack if resources else "?")
        urns = {r.name: r.urn for r in resources}
        for finding in engine.check_group(rule, resources, context, stack):
            report_violation(finding.message, urns.get(finding.resource))
    return validate


def build_policies(stacks_dir: Path | None = None) -> list[Policy]:
    """One policy per rule and scope; names are the rule ids (a stack-wide part of a resource rule
    is ``<id>-presence``). The fleet context is read once, on first use."""
    cache: list[FleetContext] = []

    def ctx() -> FleetContext:
        if not cache:
            cache.append(load_context(stacks_dir))
        return cache[0]

    resource_ids = {r.id for r in engine.RULES if r.scope is Scope.RESOURCE}
    policies: list[Policy] = []
    for rule in engine.RULES:
        if rule.scope is Scope.RESOURCE:
            policies.append(ResourceValidationPolicy(
                name=rule.id, description=rule.summary, enforcement_level=enforcement(rule),
                validate=resource_validator(rule, ctx), remediation_steps=rule.fix or None))
        else:
            name = f"{rule.id}-presence" if rule.id in resource_ids else rule.id
            policies.append(StackValidationPolicy(
                name=name, description=rule.summary, enforcement_level=enforcement(rule),
                validate=stack_validator(rule, ctx), remediation_steps=rule.fix or None))
    return policies

"""Run every guardrail over rendered resources and return findings. Pure: no pulumi import.

``gpufleet plan`` calls :func:`evaluate` on the rendered graph of all stacks; the policy pack
calls the same checks one resource or one stack at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpufleet.infra.findings import Finding
from gpufleet.infra.guardrails import (
    audit_rules,
    fleet_rules,
    instance_rules,
    key_rules,
    node_rules,
    resource_rules,
    stack_rules,
)
from gpufleet.infra.guardrails.model import FleetContext, Resource, Rule, Scope, Unevaluable

RULES: tuple[Rule, ...] = (resource_rules.RULES + stack_rules.RULES + audit_rules.RULES + key_rules.RULES
                          + instance_rules.RULES + fleet_rules.RULES + node_rules.RULES)
"""Every rule; an id may appear twice, once per scope (a resource check and its stack-wide presence check)."""


def rule_ids() -> list[str]:
    return sorted({r.id for r in RULES})


def check_resource(rule: Rule, resource: Resource, ctx: FleetContext) -> list[Finding]:
    """One resource rule on one resource; a property it cannot read is a finding, never a pass."""
    assert rule.check_resource is not None
    try:
        messages = list(rule.check_resource(resource, ctx))
    except Unevaluable as err:
        messages = [rule.unevaluable_message(resource, err)]
    return [rule.finding(resource.stack, resource.name, m) for m in messages]


def check_group(rule: Rule, resources: Sequence[Resource], ctx: FleetContext, stack: str) -> list[Finding]:
    """One stack or fleet rule over a group of resources (one stack, or the whole fleet)."""
    assert rule.check_stack is not None
    by_urn = {r.urn: r for r in resources}
    by_name = {r.name: r for r in resources}
    stacks = {r.stack for r in resources}
    findings = []
    try:
        for violation in rule.check_stack(resources, ctx):
            owner = by_urn.get(violation.urn) or by_name.get(violation.resource)
            where = owner.stack if owner else (violation.resource if violation.resource in stacks else stack)
            findings.append(rule.finding(where, violation.resource, violation.message))
    except Unevaluable as err:
        findings.append(rule.finding(stack, stack, f"stack {stack}: cannot check {rule.id}: {err}. "
                                                   f"Set it explicitly so the guardrail can evaluate it."))
    return findings


def evaluate(resources: Iterable[Resource], ctx: FleetContext) -> list[Finding]:
    """Findings of every rule over the resources of every stack, in a stable order."""
    resources = list(resources)
    stacks: dict[str, list[Resource]] = {}
    for r in resources:
        stacks.setdefault(r.stack, []).append(r)
    findings: list[Finding] = []
    for rule in RULES:
        if rule.scope is Scope.RESOURCE:
            for r in resources:
                if r.type in rule.types:
                    findings += check_resource(rule, r, ctx)
        elif rule.scope is Scope.STACK:
            for name, members in stacks.items():
                findings += check_group(rule, members, ctx, name)
        else:
            findings += check_group(rule, resources, ctx, "(fleet)")
    unique: dict[tuple[str, str, str, str], Finding] = {}
    for f in findings:
        unique.setdefault((f.rule, f.stack, f.resource, f.message), f)
    return list(unique.values())

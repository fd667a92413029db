"""The policy pack serves the same rule functions: its validate callbacks, given pulumi_policy's own
argument objects, report exactly what the engine finds offline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from guardrail_fleet import Fleet
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
from test_guardrail_mutations import MUTATIONS

from gpufleet.infra.guardrails import engine
from gpufleet.infra.guardrails.model import FleetContext, Scope, Severity
from gpufleet.infra.guardrails.pack import build_policies
from gpufleet.infra.rendered import RenderedResource


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])


def provider_of(resource: RenderedResource) -> PolicyProviderResource:
    # Providers carry structured settings JSON-encoded, as the engine passes them.
    return PolicyProviderResource("pulumi:providers:aws", unknown_checking_proxy(
        {"allowedAccountIds": json.dumps([resource.account_id]), "region": resource.region}),
        f"urn:pulumi:{resource.stack}::gpufleet::pulumi:providers:aws::aws", "aws")


def resource_args(resource: RenderedResource, props: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource.type, unknown_checking_proxy(dict(props or resource.inputs)),
                                  resource.urn, resource.name, options(), provider_of(resource))


def policy_resource(resource: RenderedResource, props: Mapping[str, Any] | None = None,
                    property_dependencies: dict[str, list[PolicyResource]] | None = None) -> PolicyResource:
    return PolicyResource(resource.type, unknown_checking_proxy(dict(props or resource.inputs)), resource.urn,
                          resource.name, options(), provider_of(resource), None, [], property_dependencies or {})


@pytest.fixture(scope="module")
def policies() -> dict[str, Any]:
    return {p.name: p for p in build_policies()}


def run_resource_policy(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[str]:
    reported: list[str] = []
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def run_stack_policy(policy: StackValidationPolicy, resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    reported: list[tuple[str, str | None]] = []
    policy.validate(StackValidationArgs(resources), lambda message, urn=None: reported.append((message, urn)))
    return reported


def test_one_policy_per_rule_and_scope_with_its_enforcement(policies):
    assert len(policies) == len(engine.RULES)
    resource_ids = {r.id for r in engine.RULES if r.scope is Scope.RESOURCE}
    for rule in engine.RULES:
        name = rule.id if rule.scope is Scope.RESOURCE or rule.id not in resource_ids else f"{rule.id}-presence"
        policy = policies[name]
        kind = ResourceValidationPolicy if rule.scope is Scope.RESOURCE else StackValidationPolicy
        assert isinstance(policy, kind), name
        expected = EnforcementLevel.MANDATORY if rule.severity is Severity.MANDATORY else EnforcementLevel.ADVISORY
        assert policy.enforcement_level is expected, name


RESOURCE_MUTATIONS = [m for m in MUTATIONS if m.level == "rendered-graph"
                      and next(r for r in engine.RULES if r.id == m.rule).scope is Scope.RESOURCE]


@pytest.mark.parametrize("mutation", RESOURCE_MUTATIONS, ids=[m.id for m in RESOURCE_MUTATIONS])
def test_resource_policies_report_what_the_engine_finds(fleet: Fleet, policies, mutation):
    mutated = mutation.apply(fleet)
    reference = {r.urn: r for r in fleet.resources()}
    changed = [r for r in mutated if reference.get(r.urn) != r]
    ctx = FleetContext.from_specs(fleet.specs)
    rule = next(r for r in engine.RULES if r.id == mutation.rule and r.scope is Scope.RESOURCE)
    seen = 0
    for resource in changed:
        if resource.type not in rule.types:
            continue
        seen += 1
        expected = [f.message for f in engine.check_resource(rule, resource, ctx)]
        assert expected, f"{mutation.id}: the engine finds nothing on {resource.urn}"
        assert run_resource_policy(policies[rule.id], resource_args(resource)) == expected
        if resource.urn in reference:  # the unmutated resource passes the same policy
            assert run_resource_policy(policies[rule.id], resource_args(reference[resource.urn])) == []
    if not seen:  # a companion was removed: the rule's stack-wide part reports it
        stack = next(r.stack for r in fleet.resources() if r not in mutated)
        members = [policy_resource(r) for r in mutated if r.stack == stack and not r.type.startswith("pulumi:")]
        assert run_stack_policy(policies[f"{rule.id}-presence"], members), mutation.id


def test_stack_policy_reports_a_missing_trail_on_the_stack(fleet: Fleet, policies):
    training = [r for r in fleet.stacks["training"].resources if not r.type.startswith("pulumi:")]
    without_trail = [policy_resource(r) for r in training if r.type != "aws:cloudtrail/trail:Trail"]
    reported = run_stack_policy(policies["cloudtrail.present"], without_trail)
    assert len(reported) == 1 and "stack training has no CloudTrail trail" in reported[0][0]
    assert run_stack_policy(policies["cloudtrail.present"], [policy_resource(r) for r in training]) == []


def test_fleet_policy_judges_one_stack_with_accounts_from_the_stack_files(fleet: Fleet, policies):
    mutation = next(m for m in MUTATIONS if m.id == "training-account-in-production-bucket-policy")
    inference = [r for r in mutation.apply(fleet) if r.stack == "inference" and not r.type.startswith("pulumi:")]
    reported = run_stack_policy(policies["fleet.no-training-in-phi"], [policy_resource(r) for r in inference])
    [(message, urn)] = reported
    assert "222222222222" in message and urn.endswith("baseline-logs-policy")


def test_preview_links_companions_through_property_dependencies(fleet: Fleet, policies):
    """In preview a new bucket's id is unknown; the pack follows the dependency instead."""
    bucket = fleet.find("training", "aws:s3/bucket:Bucket", "storage-datasets")
    sse = fleet.find("training", "aws:s3/bucketServerSideEncryptionConfiguration:"
                                 "BucketServerSideEncryptionConfiguration", "storage-datasets")
    bucket_resource = policy_resource(bucket)
    unknown_bucket = {**sse.inputs, "bucket": UNKNOWN_STRING_VALUE}
    linked = policy_resource(sse, unknown_bucket, {"bucket": [bucket_resource]})
    assert run_stack_policy(policies["s3.bucket-sse-kms-presence"], [bucket_resource, linked]) == []
    unlinked = policy_resource(sse, unknown_bucket)
    [(message, urn)] = run_stack_policy(policies["s3.bucket-sse-kms-presence"], [bucket_resource, unlinked])
    assert "no server-side encryption configuration" in message and urn == bucket.urn


def test_unknown_values_in_preview_are_reported_not_passed(fleet: Fleet, policies):
    policy = fleet.find("training", "aws:s3/bucketPolicy:BucketPolicy", "storage-datasets")
    [message] = run_resource_policy(policies["s3.tls-only"],
                                    resource_args(policy, {**policy.inputs, "policy": UNKNOWN_STRING_VALUE}))
    assert "cannot check s3.tls-only" in message and "not known yet" in message
    # A key reference that is unknown is a key created in the same update: AWS managed keys are literal.
    fs = fleet.find("training", "aws:fsx/lustreFileSystem:LustreFileSystem")
    assert run_resource_policy(policies["fsx.cmk"], resource_args(fs, {**fs.inputs, "kmsKeyId": UNKNOWN_STRING_VALUE})) == []


def test_a_resource_outside_the_fleet_accounts_is_still_judged(fleet: Fleet, policies):
    sg = fleet.find("training", "aws:ec2/securityGroup:SecurityGroup", "train-h100-sg")
    world = {**sg.inputs, "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}
    args = ResourceValidationArgs(sg.type, unknown_checking_proxy(world), sg.urn, sg.name, options(), None)
    [message] = run_resource_policy(policies["ec2.no-world-ingress"], args)
    assert "0.0.0.0/0" in message and sg.name in message


def test_without_a_pinned_account_phi_rules_report_instead_of_passing(policies):
    props = {"endpointPublicAccess": True, "encryptionConfigKeyArn": "arn:aws:kms:us-east-1:333333333333:key/k"}
    args = ResourceValidationArgs("eks:index:Cluster", unknown_checking_proxy(props),
                                  "urn:pulumi:inference::gpufleet::eks:index:Cluster::eks", "eks", options(), None)
    [message] = run_resource_policy(policies["eks.private-endpoint"], args)
    assert "cannot check eks.private-endpoint" in message and "allowedAccountIds" in message


@pytest.mark.parametrize("stack", ["platform", "training", "inference"])
def test_the_pack_passes_each_reference_stack(fleet: Fleet, policies, stack):
    resources = [r for r in fleet.stacks[stack].resources if not r.type.startswith("pulumi:")]
    reported = []
    for policy in policies.values():
        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                reported += [(policy.name, resource.name, m) for m in run_resource_policy(policy, resource_args(resource))]
        else:
            # Stack policies see each resource's state (outputs), as the engine sends it after the step.
            state = [policy_resource(r, r.outputs) for r in resources]
            reported += [(policy.name, urn, m) for m, urn in run_stack_policy(policy, state)]
    assert reported == []

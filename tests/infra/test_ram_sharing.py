"""How RAM shares reach consumers (``gpufleet:ramSharing``): the loader validates it once, the
platform renders shares without external principals (organization) or with them (invitation), and
in invitation mode each consumer accepts the shares of its pools from the platform's outputs."""

from __future__ import annotations

import dataclasses

import pytest

from gpufleet.automation.plan import plan_fleet
from gpufleet.infra import stackfile
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.guardrails import FleetContext, evaluate
from gpufleet.infra.model import RamSharing
from gpufleet.infra.offline.render import render_fleet


def invitation(specs):
    return [dataclasses.replace(s, ram_sharing=RamSharing.INVITATION) for s in specs]


def of_type(stack, type_token):
    return [r for r in stack.resources if r.type == type_token]


def test_loader_reads_the_mode_and_names_file_and_key_on_a_bad_value(reference_specs):
    assert {s.ram_sharing for s in reference_specs} == {RamSharing.ORGANIZATION}
    raw = stackfile.read_stack_file(next(p for p in stackfile.discover_stacks(stackfile_dir()) if "platform" in p.name))
    raw["gpufleet:ramSharing"] = "email"
    with pytest.raises(ConfigError) as err:
        stackfile.parse_stack(raw, name="platform", source="stacks/Pulumi.platform.yaml")
    assert "gpufleet:ramSharing" in str(err.value) and "email" in str(err.value)
    assert err.value.code == 2


def stackfile_dir():
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "stacks"


def test_a_consumer_that_disagrees_with_the_platform_is_bad_input(reference_specs):
    mixed = [dataclasses.replace(s, ram_sharing=RamSharing.INVITATION) if s.name == "inference" else s
             for s in reference_specs]
    with pytest.raises(ConfigError) as err:
        stackfile.check_fleet(mixed)
    assert "gpufleet:ramSharing" in str(err.value) and "invitation" in str(err.value)


def test_organization_mode_shares_without_external_principals_and_accepts_nothing(rendered_fleet):
    shares = of_type(rendered_fleet["platform"], "aws:ram/resourceShare:ResourceShare")
    assert shares and all(r.inputs["allowExternalPrincipals"] is False for r in shares)
    for consumer in ("training", "inference"):
        assert of_type(rendered_fleet[consumer], "aws:ram/resourceShareAccepter:ResourceShareAccepter") == []
    assert rendered_fleet["platform"].exports["ramSharing"] == "organization"


def test_invitation_mode_each_consumer_accepts_the_shares_of_its_pools(reference_specs):
    specs = invitation(reference_specs)
    fleet = {r.spec.name: r for r in render_fleet(specs)}
    shares = of_type(fleet["platform"], "aws:ram/resourceShare:ResourceShare")
    assert shares and all(r.inputs["allowExternalPrincipals"] is True for r in shares)
    exported = {p["name"]: p["shareArn"] for p in fleet["platform"].exports["pools"]}
    assert set(exported.values()) == {r.outputs["arn"] for r in shares}
    for spec in specs[1:] if specs[0].role.value == "platform" else specs:
        if spec.role.value == "platform":
            continue
        accepters = of_type(fleet[spec.name], "aws:ram/resourceShareAccepter:ResourceShareAccepter")
        used = {g.pool for g in spec.node_groups}
        assert sorted(r.inputs["shareArn"] for r in accepters) == sorted(exported[p] for p in used), spec.name
    resources = [r for s in fleet.values() for r in s.resources]
    assert [f for f in evaluate(resources, FleetContext.from_specs(specs)) if f.rule.startswith("ram.")] == []
    plan = {s.name: s.ram_sharing for s in plan_fleet(specs).stacks}
    assert plan["platform"] == "invitation"
    assert plan["training"].startswith("invitation, accepts")


def test_a_consumer_deployed_against_a_platform_sharing_otherwise_fails_naming_its_key(reference_specs, rendered_fleet):
    from gpufleet.infra.offline.render import render_stack

    training = next(s for s in invitation(reference_specs) if s.name == "training")
    exports = dict(rendered_fleet["platform"].exports)  # organization
    with pytest.raises(ConfigError) as err:
        render_stack(training, stack_outputs={training.platform_stack: exports})
    assert "gpufleet:ramSharing" in str(err.value) and "organization" in str(err.value)

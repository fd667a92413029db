"""Every deployed resource keeps its identity: the engine finds each URN of tests/infra/deployed/
(the reference stacks as deployed) under the same URN or through an alias, so nothing is replaced.

The lists are the deployed state, not a golden file: a rename adds ``aliases=``, it does not
rewrite them (tests/infra/deployed/snapshot.py says when and how they are taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest
from pulumi_aws import s3

from gpufleet.infra.offline.identity import AliasSpec, match_previous
from gpufleet.infra.offline.render import PROJECT

DEPLOYED = Path(__file__).resolve().parent / "deployed"


def deployed(stack: str) -> list[str]:
    lines = (DEPLOYED / f"{stack}.urns").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


ENDPOINT = "gpufleet:network:Network$aws:ec2/vpcEndpoint:VpcEndpoint"
RETIRED: dict[str, str] = {
    **{f"urn:pulumi:{stack}::{PROJECT}::{ENDPOINT}::network-{service}": (
        "interface endpoints are rendered from gpufleet.infra.reachability: no caller of this stack calls it")
       for stack, services in (("platform", ("ecr-api", "ecr-dkr", "logs", "ssm", "sts")),
                               ("training", ("ecr-api", "ecr-dkr", "logs")),
                               ("inference", ("logs", "ssm")))
       for service in services},
}
"""Deployed URNs deleted on purpose (the next ``pulumi up`` removes them), with the reason. Each
must really be gone from the render; anything else lost is an accidental rename."""


@pytest.mark.parametrize("stack", ["platform", "training", "inference"])
def test_every_deployed_resource_is_found_again(rendered_fleet, stack):
    previous = deployed(stack)
    assert len(previous) > 50
    retired = [urn for urn in previous if urn in RETIRED]
    rendered = {r.urn for r in rendered_fleet[stack].resources}
    assert not rendered & set(retired), "a retired URN is rendered again: drop it from RETIRED"
    matching = match_previous(rendered_fleet[stack].resources, [u for u in previous if u not in RETIRED],
                              stack=stack, project=PROJECT)
    assert matching.lost == (), (f"{len(matching.lost)} deployed resources of {stack} would be deleted and "
                                 "created anew; give each renamed or moved resource aliases=:\n"
                                 + "\n".join(matching.lost))
    assert matching.conflicts == ()


@dataclass(frozen=True)
class Seen:
    """A registration as the mock monitor recorded it."""

    urn: str
    type: str
    name: str
    parent: str | None
    aliases: tuple[AliasSpec, ...]


class Holder(pulumi.ComponentResource):
    def __init__(self, name: str, type_: str = "test:store:Holder", opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_, name, None, opts)
        self.register_outputs({})


def registered(mock_runtime) -> list[Seen]:
    mock_runtime.settle(pulumi.Output.from_input(None))  # every registration has reached the monitor
    return [Seen(r["urn"], r["type"], r["name"], r["parent"], r["aliases"]) for r in mock_runtime.monitor.registrations]


OLD_BUCKET = "urn:pulumi:test::gpufleet::aws:s3/bucket:Bucket::logs"
"""A bucket once created at the top of the program: ``s3.Bucket("logs")``."""


def test_a_bucket_moved_into_a_component_without_an_alias_is_lost(mock_runtime):
    holder = Holder("store")
    s3.Bucket("store-bucket", opts=pulumi.ResourceOptions(parent=holder))
    matching = match_previous(registered(mock_runtime), [OLD_BUCKET], stack="test", project=PROJECT)
    assert matching.lost == (OLD_BUCKET,) and matching.found == {}


def test_the_alias_to_its_old_name_and_parent_finds_it(mock_runtime):
    holder = Holder("store")
    s3.Bucket("store-bucket", opts=pulumi.ResourceOptions(
        parent=holder, aliases=[pulumi.Alias(name="logs", parent=pulumi.ROOT_STACK_RESOURCE)]))
    seen = registered(mock_runtime)
    bucket = next(r for r in seen if r.type == "aws:s3/bucket:Bucket")
    assert bucket.urn == "urn:pulumi:test::gpufleet::test:store:Holder$aws:s3/bucket:Bucket::store-bucket"
    matching = match_previous(seen, [OLD_BUCKET], stack="test", project=PROJECT)
    assert matching.lost == () and matching.found == {bucket.urn: OLD_BUCKET}


def test_children_follow_a_parent_found_under_its_old_type_and_name(mock_runtime):
    old = ["urn:pulumi:test::gpufleet::old:store:Holder::shop",
           "urn:pulumi:test::gpufleet::old:store:Holder$aws:s3/bucket:Bucket::shop-bucket",
           "urn:pulumi:test::gpufleet::old:store:Holder$aws:s3/bucket:Bucket::kept-name"]
    holder = Holder("store", opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="shop", type_="old:store:Holder")]))
    s3.Bucket("store-bucket", opts=pulumi.ResourceOptions(parent=holder))  # named after its parent
    s3.Bucket("kept-name", opts=pulumi.ResourceOptions(parent=holder))
    matching = match_previous(registered(mock_runtime), old, stack="test", project=PROJECT)
    assert matching.lost == () and sorted(matching.found.values()) == sorted(old)


def test_two_resources_claiming_one_old_urn_is_a_conflict(mock_runtime):
    for name in ("a", "b"):
        s3.Bucket(name, opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="logs")]))
    matching = match_previous(registered(mock_runtime), [OLD_BUCKET], stack="test", project=PROJECT)
    assert len(matching.conflicts) == 1 and "both claim" in matching.conflicts[0]


def test_full_urn_aliases_are_recorded_as_urns(mock_runtime):
    s3.Bucket("renamed", opts=pulumi.ResourceOptions(aliases=[OLD_BUCKET]))
    (bucket,) = registered(mock_runtime)
    assert AliasSpec(urn=OLD_BUCKET) in bucket.aliases  # pulumi_aws adds its own (s3.BucketV2's type)
    assert match_previous([bucket], [OLD_BUCKET], stack="test", project=PROJECT).found == {bucket.urn: OLD_BUCKET}

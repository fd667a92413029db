"""The subnet planner, tested directly with hypothesis."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.infra.cidr import SMALLEST_PREFIX, SubnetTier, plan_subnets

az_ids = st.lists(st.integers(1, 9), min_size=1, max_size=6, unique=True).map(
    lambda ns: [f"use1-az{n}" for n in ns])
vpcs = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(16, 24)).map(
    lambda t: str(ipaddress.IPv4Network(f"10.{t[0]}.{t[1]}.0/{t[2]}", strict=False)))


@given(vpc=vpcs, azs=az_ids, enable_nat=st.booleans())
def test_subnets_are_disjoint_inside_the_vpc_one_per_az_and_tier(vpc, azs, enable_nat):
    plans = plan_subnets(vpc, azs, enable_nat=enable_nat)
    network = ipaddress.IPv4Network(vpc)
    blocks = [ipaddress.IPv4Network(p.cidr) for p in plans]
    for block in blocks:
        assert block.subnet_of(network), (vpc, block)
        assert block.prefixlen <= SMALLEST_PREFIX, block
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            assert not a.overlaps(b), (a, b)
    private = [p.az_id for p in plans if p.tier is SubnetTier.PRIVATE]
    public = [p.az_id for p in plans if p.tier is SubnetTier.PUBLIC]
    assert private == azs
    assert public == (azs if enable_nat else [])


@given(vpc=vpcs, azs=az_ids)
def test_private_subnets_are_larger_than_public_ones(vpc, azs):
    plans = plan_subnets(vpc, azs, enable_nat=True)
    private = min(ipaddress.IPv4Network(p.cidr).num_addresses for p in plans if p.tier is SubnetTier.PRIVATE)
    public = max(ipaddress.IPv4Network(p.cidr).num_addresses for p in plans if p.tier is SubnetTier.PUBLIC)
    assert private >= public


def test_repeated_or_missing_az_ids_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        plan_subnets("10.0.0.0/16", ["use1-az1", "use1-az1"], enable_nat=False)
    with pytest.raises(ValueError, match="at least one"):
        plan_subnets("10.0.0.0/16", [], enable_nat=False)

"""Split a VPC CIDR block into one private subnet per AZ ID (and a small public one where NAT needs it).

Pure: no pulumi import. Layout: the first half of the VPC holds the private subnets, as large as
the AZ count allows (GPU nodes with 16-32 EFA interfaces each use many addresses); the second half
holds the public subnets, which carry only NAT gateways and so stay small.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

SMALLEST_PREFIX = 28
"""AWS refuses subnets smaller than /28."""
PUBLIC_SHRINK = 4
"""Public subnets are this many prefix bits smaller than private ones (they hold NAT gateways only)."""


class SubnetTier(enum.StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"


@dataclass(frozen=True, kw_only=True)
class SubnetPlan:
    """One subnet to create."""

    az_id: str
    """AZ ID the subnet lives in."""
    tier: SubnetTier
    """private (nodes, endpoints, file systems) or public (NAT gateways only)."""
    cidr: str
    """The subnet's IPv4 block, inside the VPC block."""


def plan_subnets(vpc_cidr: str, az_ids: Sequence[str], *, enable_nat: bool) -> list[SubnetPlan]:
    """Private subnets for every AZ ID, in order; public ones too when ``enable_nat``.

    Raises ValueError when the block is too small for the AZ count.
    """
    if not az_ids:
        raise ValueError("at least one AZ ID is needed")
    if len(set(az_ids)) != len(az_ids):
        raise ValueError(f"AZ IDs repeat: {list(az_ids)}")
    vpc = ipaddress.IPv4Network(vpc_cidr)
    bits = max(1, math.ceil(math.log2(len(az_ids))))
    private_prefix = vpc.prefixlen + 1 + bits
    if private_prefix > SMALLEST_PREFIX:
        raise ValueError(f"{vpc_cidr} is too small for {len(az_ids)} AZs (subnets would be /{private_prefix})")
    private_half, public_half = vpc.subnets(prefixlen_diff=1)
    plans = [
        SubnetPlan(az_id=az, tier=SubnetTier.PRIVATE, cidr=str(block))
        for az, block in zip(az_ids, private_half.subnets(new_prefix=private_prefix), strict=False)
    ]
    if enable_nat:
        public_prefix = min(private_prefix + PUBLIC_SHRINK, SMALLEST_PREFIX)
        plans += [
            SubnetPlan(az_id=az, tier=SubnetTier.PUBLIC, cidr=str(block))
            for az, block in zip(az_ids, public_half.subnets(new_prefix=public_prefix), strict=False)
        ]
    return plans

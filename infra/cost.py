"""Estimated cost per hour of a rendered stack. Pure: no pulumi import.

EC2 comes from the instance catalog (prices in infra/data/instance_prices.csv); everything else from
infra/data/service_prices.csv. Both ship with their source and as-of date. Reserved capacity is
billed to the platform account whether used or not; the estimate charges each consumer for the
nodes it runs, at on-demand rates, which is what the reservation costs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

from gpufleet.infra import catalog
from gpufleet.infra.rendered import RenderedStack

HOURS_PER_MONTH = 730
SERVICE_PRICE_AS_OF = "2025-06-05"
PRICE_REGION = "us-east-1"


@dataclass(frozen=True, kw_only=True)
class ServicePrice:
    service: str
    unit: str
    """hour, az-hour, gb-month or month."""
    price_usd: float
    source: str


@dataclass(frozen=True, kw_only=True)
class CostItem:
    """One line of a stack's estimate."""

    item: str
    """What is billed (an instance type, a file system, NAT gateways...)."""
    quantity: float
    """How many units (nodes, GiB, gateways, endpoint-AZs)."""
    unit: str
    """Unit of the price."""
    unit_price_usd: float
    usd_per_hour: float


@cache
def service_prices() -> dict[str, ServicePrice]:
    text = resources.files("gpufleet.infra").joinpath("data/service_prices.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {row["service"]: ServicePrice(service=row["service"], unit=row["unit"],
                                         price_usd=float(row["price_usd"]), source=row["source"])
            for row in rows}


def _hourly(price: ServicePrice, quantity: float) -> float:
    per_unit = price.price_usd / HOURS_PER_MONTH if price.unit.endswith("month") else price.price_usd
    return per_unit * quantity


def _item(service: str, label: str, quantity: float) -> CostItem:
    price = service_prices()[service]
    return CostItem(item=label, quantity=quantity, unit=price.unit, unit_price_usd=price.price_usd,
                    usd_per_hour=round(_hourly(price, quantity), 4))


def has_prices(region: str) -> bool:
    """Whether the shipped prices are those of ``region`` (they are list prices of PRICE_REGION only)."""
    return region == PRICE_REGION


def stack_cost(stack: RenderedStack) -> list[CostItem]:
    """Cost lines of one stack: GPU nodes at their initial size, then the services around them.

    None for a stack in a region without prices: another region's prices would be wrong, not close.
    """
    items: list[CostItem] = []
    if not has_prices(stack.spec.region):
        return items
    for group in stack.spec.node_groups:
        info = catalog.lookup(group.instance_type)
        items.append(CostItem(item=f"{group.name} ({group.instance_type})", quantity=group.initial_nodes,
                              unit="node-hour", unit_price_usd=info.price_usd_per_hour,
                              usd_per_hour=round(info.price_usd_per_hour * group.initial_nodes, 4)))
    for fs in stack.of_type("aws:fsx/lustreFileSystem:LustreFileSystem"):
        gib = int(fs.inputs.get("storageCapacity", 0))
        throughput = int(fs.inputs.get("perUnitStorageThroughput", 0))
        # FSx bills decimal GB: 1 GiB = 1.073741824 GB.
        items.append(_item(f"fsx-lustre-persistent2-{throughput}", f"{fs.name} ({gib} GiB, {throughput} MB/s/TiB)",
                           round(gib * 1.073741824, 1)))
    nats = stack.of_type("aws:ec2/natGateway:NatGateway")
    if nats:
        items.append(_item("nat-gateway", "NAT gateways", len(nats)))
    endpoint_azs = sum(len(e.inputs.get("subnetIds") or []) for e in stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                       if e.inputs.get("vpcEndpointType") == "Interface")
    if endpoint_azs:
        items.append(_item("vpc-interface-endpoint", "interface endpoints (endpoint x AZ)", endpoint_azs))
    clusters = stack.of_type("aws:eks/cluster:Cluster") + stack.of_type("eks:index:Cluster")
    if clusters:
        items.append(_item("eks-control-plane", "EKS control planes", len(clusters)))
    keys = stack.of_type("aws:kms/key:Key")
    if keys:
        items.append(_item("kms-key", "KMS keys", len(keys)))
    return items


def price_sources() -> list[str]:
    return [f"{catalog.PRICE_SOURCE}, as of {catalog.PRICE_AS_OF}",
            f"service prices ({PRICE_REGION}): infra/data/service_prices.csv, as of {SERVICE_PRICE_AS_OF}"]

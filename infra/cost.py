"""Estimated cost per hour of a rendered stack. Pure: no pulumi import.

EC2 comes from the instance catalog (prices in infra/data/instance_prices.csv); everything else from
infra/data/service_prices.csv. Both ship with their source and as-of date. Reserved capacity is
billed to the platform account whether used or not; the estimate charges each consumer for the
nodes it runs, at on-demand rates, which is what the reservation costs, and the platform account
for the slots no consumer fills (:func:`unused_reservation`), or the consumer that took billing
ownership of the unused capacity. A Capacity Block bills its purchase price (the pool's
``pricePerHourUsd``) instead of the on-demand rate, used or not. The Slurm head and the EKS system
nodes are counted with their stacks.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from gpufleet.infra import catalog
from gpufleet.infra.capacity import PoolUsage
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


def stack_cost(stack: RenderedStack, pool_prices: Mapping[str, float] | None = None) -> list[CostItem]:
    """Cost lines of one stack: GPU nodes at their initial size, then the services around them.
    ``pool_prices``: pool -> price per node-hour where it is not the on-demand rate (Capacity Blocks).

    None for a stack in a region without prices: another region's prices would be wrong, not close.
    """
    items: list[CostItem] = []
    if not has_prices(stack.spec.region):
        return items
    for group in stack.spec.node_groups:
        price = (pool_prices or {}).get(group.pool, catalog.lookup(group.instance_type).price_usd_per_hour)
        items.append(CostItem(item=f"{group.name} ({group.instance_type})", quantity=group.initial_nodes,
                              unit="node-hour", unit_price_usd=price,
                              usd_per_hour=round(price * group.initial_nodes, 4)))
    items += _support_instances(stack)
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


def _ec2_line(label: str, instance_type: str, quantity: int, price: float | None = None) -> CostItem:
    price = catalog.lookup(instance_type).price_usd_per_hour if price is None else price
    return CostItem(item=f"{label} ({instance_type})", quantity=quantity, unit="node-hour",
                    unit_price_usd=price, usd_per_hour=round(price * quantity, 4))


def _support_instances(stack: RenderedStack) -> list[CostItem]:
    """The instances around the GPUs: Slurm heads (EC2 instances) and EKS system node groups."""
    items = []
    for head in stack.of_type("aws:ec2/instance:Instance"):
        items.append(_ec2_line(head.name, str(head.inputs.get("instanceType")), 1))
    gpu_groups = {g.name for g in stack.spec.node_groups}
    for group in stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        types = group.inputs.get("instanceTypes") or []
        scaling = group.inputs.get("scalingConfig") or {}
        if not types or catalog.lookup(str(types[0])).gpus or group.name in gpu_groups:
            continue  # GPU node groups are the first lines
        items.append(_ec2_line(group.name, str(types[0]), int(scaling.get("desiredSize") or 0)))
    return items


def pool_prices(pools: Sequence[PoolUsage]) -> dict[str, float]:
    """Pool -> price per node-hour, for the pools that do not bill the on-demand rate."""
    return {p.name: p.price_usd_per_hour for p in pools if p.price_usd_per_hour is not None}


def unused_reservation(pools: Sequence[PoolUsage]) -> dict[str | None, list[CostItem]]:
    """Reserved slots no consumer fills at the initial sizes, billed all the same: role -> its
    lines (None: the platform account, the owner; else the consumer that took billing ownership)."""
    items: dict[str | None, list[CostItem]] = {}
    for pool in pools:
        if pool.kind == "on-demand" or pool.free <= 0:
            continue
        label = f"unused reserved slots of {pool.name}"
        items.setdefault(pool.unused_billed_to, []).append(
            _ec2_line(label, pool.instance_type, pool.free, pool.price_usd_per_hour))
    return items


def spare_nodes(pools: Sequence[PoolUsage]) -> list[CostItem]:
    """The pools' hot spares: launched instances, on the bill of the training account that holds
    them (in a reservation a spare bills what its slot would bill unused; on demand it is extra)."""
    return [_ec2_line(f"hot spares of {p.name}", p.instance_type, p.spares, p.price_usd_per_hour)
            for p in pools if p.spares > 0]


def price_sources() -> list[str]:
    return [f"{catalog.PRICE_SOURCE}, as of {catalog.PRICE_AS_OF}",
            f"service prices ({PRICE_REGION}): infra/data/service_prices.csv, as of {SERVICE_PRICE_AS_OF}"]

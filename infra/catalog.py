"""Instance type facts (GPUs, EFA interfaces, on-demand price) and the EFA interface layout.

Pure: no pulumi import. The hardware facts are the node bundle's (``lifecycle/data/instance_types.csv``
read by ``gpufleet.lifecycle.instance_types``): nodes check themselves against the same rows the
planners size with, from one file. Prices are the control plane's alone and live beside it in
``data/instance_prices.csv`` (a price change must not produce a new node bundle); the two files
must list the same instance types, checked when the catalog is first read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from gpufleet.lifecycle import instance_types
from gpufleet.lifecycle.instance_types import InstanceFacts, UnknownInstanceTypeError

__all__ = ["InstanceType", "NetworkInterfaceSlot", "UnknownInstanceTypeError", "efa_interface_layout",
           "known_instance_types", "lookup"]

PRICE_SOURCE = "AWS EC2 on-demand pricing, Linux, us-east-1"
PRICE_AS_OF = "2025-06-05"
PRICES = "infra/data/instance_prices.csv"


@dataclass(frozen=True, kw_only=True)
class InstanceType(InstanceFacts):
    """One row of the catalog: the node's facts plus the price the planners estimate with."""

    price_usd_per_hour: float
    """Linux on-demand price in us-east-1 (``PRICE_AS_OF``)."""


def parse_prices(text: str, source: str = PRICES) -> dict[str, float]:
    """Instance type -> price from the CSV text; ValueError naming the file, line and value."""
    prices: dict[str, float] = {}
    for line_no, row in instance_types.read_rows(text, ["instance_type", "price_usd_per_hour"], source):
        name, value = row["instance_type"], row["price_usd_per_hour"]
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not price >= 0:  # also NaN
            raise ValueError(f"{source}:{line_no}: price_usd_per_hour={value!r} is not a price (a number >= 0)")
        if name in prices:
            raise ValueError(f"{source}:{line_no}: instance_type={name!r} is listed twice")
        prices[name] = price
    return prices


def join(facts: dict[str, InstanceFacts], prices: dict[str, float]) -> dict[str, InstanceType]:
    """The catalog: every type with its price; ValueError naming the types either file lacks."""
    problems = []
    if unpriced := sorted(set(facts) - set(prices)):
        problems.append(f"{PRICES} has no price for {unpriced} (listed in {instance_types.SOURCE})")
    if unknown := sorted(set(prices) - set(facts)):
        problems.append(f"{PRICES} prices {unknown}, which {instance_types.SOURCE} does not list")
    if problems:
        raise ValueError("; ".join(problems))
    return {name: InstanceType(**vars(row), price_usd_per_hour=prices[name]) for name, row in facts.items()}


@cache
def _table() -> dict[str, InstanceType]:
    text = resources.files("gpufleet.infra").joinpath("data/instance_prices.csv").read_text()
    return join(instance_types.table(), parse_prices(text))


def known_instance_types() -> list[str]:
    return sorted(_table())


def lookup(instance_type: str) -> InstanceType:
    """The catalog row, or UnknownInstanceTypeError naming the known types."""
    try:
        return _table()[instance_type]
    except KeyError:
        raise UnknownInstanceTypeError(instance_type) from None


@dataclass(frozen=True, kw_only=True)
class NetworkInterfaceSlot:
    """One network interface of a launch template."""

    network_card_index: int
    device_index: int
    interface_type: str
    """``efa`` (EFA + IP), ``efa-only`` (EFA without an IP address) or ``interface`` (ENA)."""


def efa_interface_layout(instance_type: str) -> list[NetworkInterfaceSlot]:
    """Every EFA interface the instance supports, one per network card.

    Card 0 carries the primary interface (device index 0) as ``efa`` so the node keeps an IP
    address; every other card gets ``efa-only`` at device index 1, which is AWS's recommended
    layout for P5 and later (EFA traffic on all cards, no IP addresses wasted). A type without EFA
    gets one plain interface.
    """
    info = lookup(instance_type)
    if not info.has_efa:
        return [NetworkInterfaceSlot(network_card_index=0, device_index=0, interface_type="interface")]
    slots = [NetworkInterfaceSlot(network_card_index=0, device_index=0, interface_type="efa")]
    slots += [
        NetworkInterfaceSlot(network_card_index=card, device_index=1, interface_type="efa-only")
        for card in range(1, info.efa_interfaces)
    ]
    return slots

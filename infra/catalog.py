"""Instance type facts (GPUs, EFA interfaces, on-demand price) and the EFA interface layout.

Pure: no pulumi import. The table ships as ``data/instance_types.csv`` with its source and date.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

PRICE_SOURCE = "AWS EC2 on-demand pricing, Linux, us-east-1"
PRICE_AS_OF = "2025-06-05"


class UnknownInstanceTypeError(KeyError):
    """Raised for an instance type the catalog does not list."""

    def __init__(self, instance_type: str) -> None:
        super().__init__(instance_type)
        self.instance_type = instance_type

    def __str__(self) -> str:
        return f"unknown instance type {self.instance_type!r}; known: {', '.join(sorted(_table()))}"


@dataclass(frozen=True, kw_only=True)
class InstanceType:
    """One row of the catalog."""

    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int
    vcpus: int
    memory_gib: int
    efa_interfaces: int
    """Maximum EFA interfaces: one per network card."""
    price_usd_per_hour: float

    @property
    def has_efa(self) -> bool:
        return self.efa_interfaces > 0

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0


@dataclass(frozen=True, kw_only=True)
class NetworkInterfaceSlot:
    """One network interface of a launch template."""

    network_card_index: int
    device_index: int
    interface_type: str
    """``efa`` (EFA + IP), ``efa-only`` (EFA without an IP address) or ``interface`` (ENA)."""


@cache
def _table() -> dict[str, InstanceType]:
    text = resources.files("gpufleet.infra").joinpath("data/instance_types.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    table = {}
    for row in rows:
        table[row["instance_type"]] = InstanceType(
            name=row["instance_type"],
            gpus=int(row["gpus"]),
            gpu_model=row["gpu_model"],
            gpu_memory_gib=int(row["gpu_memory_gib"]),
            vcpus=int(row["vcpus"]),
            memory_gib=int(row["memory_gib"]),
            efa_interfaces=int(row["efa_interfaces"]),
            price_usd_per_hour=float(row["price_usd_per_hour"]),
        )
    return table


def known_instance_types() -> list[str]:
    return sorted(_table())


def lookup(instance_type: str) -> InstanceType:
    """The catalog row, or UnknownInstanceTypeError naming the known types."""
    try:
        return _table()[instance_type]
    except KeyError:
        raise UnknownInstanceTypeError(instance_type) from None


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

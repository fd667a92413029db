"""The instance types gpufleet runs on, as a node needs to know them: GPUs, GPU model, EFA, memory.

The facts live in ``data/instance_types.csv``, which ships inside the node bundle, and this module
is their only reader: the health checks read them on the node, and the control plane's catalog
(``gpufleet.infra.catalog``) reads the same file through :func:`lookup` / :func:`table` and adds
only what nodes never need (on-demand prices). One file, not a copy generated for the bundle: the
bundle may not import infra, while infra may import lifecycle, so the facts belong on this side and
there is nothing to keep in step.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

SOURCE = "lifecycle/data/instance_types.csv"


class UnknownInstanceTypeError(KeyError):
    """Raised for an instance type the catalog does not list."""

    def __init__(self, instance_type: str) -> None:
        super().__init__(instance_type)
        self.instance_type = instance_type

    def __str__(self) -> str:
        return f"unknown instance type {self.instance_type!r}; known: {', '.join(known_instance_types())}"


@dataclass(frozen=True, kw_only=True)
class InstanceFacts:
    """One row of the catalog: what the hardware of an instance type is."""

    name: str
    """EC2 instance type, ``p5.48xlarge``."""
    gpus: int
    """Accelerators per instance (GPUs, Trainium chips); 0 for a CPU type."""
    gpu_model: str
    """Accelerator model as the expected-performance table keys it (``H100``); '' without GPUs."""
    gpu_memory_gib: int
    """Memory per accelerator."""
    vcpus: int
    """vCPUs per instance."""
    memory_gib: int
    """Host memory per instance."""
    efa_interfaces: int
    """Maximum EFA interfaces: one per network card."""

    @property
    def has_efa(self) -> bool:
        return self.efa_interfaces > 0

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0


def read_rows(text: str, header: list[str], source: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a commented CSV file whose header must be ``header``."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line and not line.startswith("#")]
    rows = csv.DictReader(line for _, line in lines)
    if rows.fieldnames != header:
        raise ValueError(f"{source}: header {rows.fieldnames} is not {header}")
    for (line_no, _), row in zip(lines[1:], rows, strict=True):
        if None in row or None in row.values():
            raise ValueError(f"{source}:{line_no}: expected {len(header)} columns ({', '.join(header)})")
        yield line_no, row


def parse(text: str, source: str = SOURCE) -> dict[str, InstanceFacts]:
    """Instance type -> facts from the CSV text; ValueError naming the file, line, column and value."""
    header = ["instance_type", *(f.name for f in fields(InstanceFacts) if f.name != "name")]
    table: dict[str, InstanceFacts] = {}
    for line_no, row in read_rows(text, header, source):
        name, model = row["instance_type"], row["gpu_model"]
        counts = {}
        for column in ("gpus", "gpu_memory_gib", "vcpus", "memory_gib", "efa_interfaces"):
            value = row[column]
            if not value.isdigit():
                raise ValueError(f"{source}:{line_no}: {column}={value!r} is not a whole number >= 0")
            counts[column] = int(value)
        if not name:
            raise ValueError(f"{source}:{line_no}: instance_type is empty")
        if name in table:
            raise ValueError(f"{source}:{line_no}: instance_type={name!r} is listed twice")
        if bool(counts["gpus"]) != bool(model):
            raise ValueError(f"{source}:{line_no}: gpu_model={model!r} with gpus={counts['gpus']}: "
                             "a type has a GPU model exactly when it has GPUs")
        table[name] = InstanceFacts(name=name, gpu_model=model, **counts)
    return table


@cache
def table() -> dict[str, InstanceFacts]:
    """The catalog shipped with this package, read once."""
    return parse(resources.files("gpufleet.lifecycle").joinpath("data/instance_types.csv").read_text())


def known_instance_types() -> list[str]:
    return sorted(table())


def lookup(instance_type: str) -> InstanceFacts:
    """The catalog row, or UnknownInstanceTypeError naming the known types."""
    try:
        return table()[instance_type]
    except KeyError:
        raise UnknownInstanceTypeError(instance_type) from None

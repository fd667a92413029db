"""Parser of ``nvidia-smi -q -x``: per-GPU identity, ECC counters, row remapping and clock event reasons.

Handles both layouts the drivers write: 535+ (``clocks_event_reasons``, ``dram_uncorrectable`` /
``sram_uncorrectable_*`` counters) and older ones (``clocks_throttle_reasons``, ``single_bit`` /
``double_bit`` totals). Values of ``N/A`` read as None.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

COMMAND = ("nvidia-smi", "-q", "-x")


@dataclass(frozen=True, kw_only=True)
class EccCounts:
    """Error counts since driver load (volatile) or over the GPU's life (aggregate)."""

    correctable: int = 0
    """Single-bit / correctable errors, DRAM and SRAM."""
    uncorrectable: int = 0
    """Double-bit / uncorrectable errors, DRAM and SRAM."""


@dataclass(frozen=True, kw_only=True)
class GpuInfo:
    """What the quick tier needs of one GPU."""

    bus_id: str
    product_name: str
    uuid: str = ""
    minor_number: int | None = None
    ecc_enabled: bool | None = None
    volatile: EccCounts = field(default_factory=EccCounts)
    aggregate: EccCounts = field(default_factory=EccCounts)
    retired_pages_pending: bool = False
    """Page retirement (pre-Ampere) waiting for a reset."""
    remapped_rows_pending: bool = False
    """A row remap waits for a GPU reset (Ampere and later)."""
    remapped_rows_failure: bool = False
    """Row remapping failed: the GPU is out of spare rows."""
    remapped_rows_uncorrectable: int = 0
    active_clock_reasons: frozenset[str] = frozenset()
    """Active clock event / throttle reasons without prefix: ``hw_slowdown``, ``sw_thermal_slowdown``."""
    temperature_c: float | None = None


@dataclass(frozen=True, kw_only=True)
class SmiLog:
    """The whole ``nvidia-smi -q -x`` document."""

    driver_version: str | None
    cuda_version: str | None
    attached_gpus: int
    gpus: tuple[GpuInfo, ...]


class SmiParseError(ValueError):
    """The output is not an nvidia_smi_log document."""


def _text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in {"", "N/A", "Unknown Error", "[N/A]"} else value


def _int(node: ET.Element | None, path: str) -> int:
    value = _text(node, path)
    if value is None:
        return 0
    try:
        return int(value.split()[0])
    except ValueError:
        return 0


def _yes(node: ET.Element | None, path: str) -> bool:
    return (_text(node, path) or "").lower() in {"yes", "true", "active"}


def _ecc(block: ET.Element | None) -> EccCounts:
    if block is None:
        return EccCounts()
    if block.find("single_bit") is not None or block.find("double_bit") is not None:
        return EccCounts(correctable=_int(block, "single_bit/total"), uncorrectable=_int(block, "double_bit/total"))
    corr = _int(block, "dram_correctable") + _int(block, "sram_correctable")
    unc = sum(_int(block, tag) for tag in ("dram_uncorrectable", "sram_uncorrectable",
                                          "sram_uncorrectable_parity", "sram_uncorrectable_secded"))
    return EccCounts(correctable=corr, uncorrectable=unc)


def _clock_reasons(gpu: ET.Element) -> frozenset[str]:
    block = gpu.find("clocks_event_reasons")
    prefix = "clocks_event_reason_"
    if block is None:
        block = gpu.find("clocks_throttle_reasons")
        prefix = "clocks_throttle_reason_"
    if block is None:
        return frozenset()
    return frozenset(
        child.tag.removeprefix(prefix) for child in block
        if (child.text or "").strip().lower() == "active"
    )


def _temperature(gpu: ET.Element) -> float | None:
    value = _text(gpu, "temperature/gpu_temp")
    try:
        return float(value.split()[0]) if value else None
    except ValueError:
        return None


def parse_smi_xml(text: str) -> SmiLog:
    """Parse the document; SmiParseError when it is not one (the check reports the first line)."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as err:
        raise SmiParseError(f"not XML: {err}") from None
    if root.tag != "nvidia_smi_log":
        raise SmiParseError(f"root element is <{root.tag}>, expected <nvidia_smi_log>")
    gpus = []
    for gpu in root.findall("gpu"):
        minor = _text(gpu, "minor_number")
        gpus.append(GpuInfo(
            bus_id=gpu.get("id", "") or (_text(gpu, "pci/pci_bus_id") or ""),
            product_name=_text(gpu, "product_name") or "",
            uuid=_text(gpu, "uuid") or "",
            minor_number=int(minor) if minor and minor.isdigit() else None,
            ecc_enabled=None if _text(gpu, "ecc_mode/current_ecc") is None
            else _text(gpu, "ecc_mode/current_ecc") == "Enabled",
            volatile=_ecc(gpu.find("ecc_errors/volatile")),
            aggregate=_ecc(gpu.find("ecc_errors/aggregate")),
            retired_pages_pending=_yes(gpu, "retired_pages/pending_retirement")
            or _yes(gpu, "retired_pages/pending_blacklist"),
            remapped_rows_pending=_yes(gpu, "remapped_rows/remapped_row_pending"),
            remapped_rows_failure=_yes(gpu, "remapped_rows/remapped_row_failure"),
            remapped_rows_uncorrectable=_int(gpu, "remapped_rows/remapped_row_unc"),
            active_clock_reasons=_clock_reasons(gpu),
            temperature_c=_temperature(gpu),
        ))
    attached = _text(root, "attached_gpus")
    return SmiLog(
        driver_version=_text(root, "driver_version"), cuda_version=_text(root, "cuda_version"),
        attached_gpus=int(attached) if attached and attached.isdigit() else len(gpus), gpus=tuple(gpus),
    )


KNOWN_MODELS = ("GB200", "B200", "H200", "H100", "A100", "A10G", "L40S", "L4")


def model_of(product_name: str) -> str:
    """Catalog model of an nvidia-smi product name: ``NVIDIA H100 80GB HBM3`` -> ``H100``."""
    words = product_name.upper().replace("-", " ").split()
    for model in KNOWN_MODELS:
        if model in words:
            return model
    return product_name

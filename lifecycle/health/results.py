"""Typed results of the node health checks: one CheckResult per check (and device), one NodeReport per node.

Both serialize to plain JSON (``to_dict`` / ``from_dict``) so a report crosses process and machine
boundaries (``python -m gpufleet.lifecycle.health --json`` on the node, the gate in the automation).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    """Verdict of one check. SKIP: the check does not apply here (the detail says why)."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"

    @property
    def severity(self) -> int:
        """Order for the worst-of: SKIP < PASS < WARN < FAIL."""
        return _SEVERITY[self]

    @property
    def metric_value(self) -> int:
        """Value of ``gpufleet_health_check_status``: 0 pass, 1 warn, 2 fail, -1 skip."""
        return {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.SKIP: -1}[self]


_SEVERITY = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}


class Action(enum.Enum):
    """What an operator (or the hook) should do about a result, most drastic first."""

    ISOLATE = "ISOLATE"
    """Take the node out of service for good (replace the instance, open a hardware case)."""
    REBOOT = "REBOOT"
    """Reboot the node (GPU off the bus, driver gone, EFA device missing after a fault)."""
    RESET = "RESET"
    """Reset the GPU (nvidia-smi -r) when idle: pending row remaps, contained ECC errors."""
    MONITOR = "MONITOR"
    """Keep serving, watch the trend."""
    NONE = "NONE"


class Tier(enum.Enum):
    """Checks grouped by cost."""

    QUICK = "quick"
    """Seconds: fit for a Slurm prolog / HealthCheckProgram or a Kubernetes startup probe."""
    PERFORMANCE = "performance"
    """A minute or two of torch measurements (GEMM, memory bandwidth, all-reduce)."""
    DEEP = "deep"
    """On demand, tens of minutes: DCGM diagnostics level 3/4, multi-node all-reduce."""


def parse_tiers(text: str) -> tuple[Tier, ...]:
    """``"quick,performance"`` -> (Tier.QUICK, Tier.PERFORMANCE); ValueError names the bad word."""
    tiers = []
    for word in (w.strip().lower() for w in text.split(",")):
        if not word:
            continue
        try:
            tiers.append(Tier(word))
        except ValueError:
            raise ValueError(f"unknown tier {word!r}; known: {', '.join(t.value for t in Tier)}") from None
    if not tiers:
        raise ValueError("no tier given")
    return tuple(dict.fromkeys(tiers))


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """The verdict of one check on one node (or one device of it)."""

    check: str
    """Stable name, also the ``check`` label of the metrics (``ecc``, ``gemm_bf16``, ...)."""
    status: Status
    tier: Tier = Tier.QUICK
    measured: float | None = None
    """What was measured, in ``unit`` (None for yes/no checks)."""
    expected: float | None = None
    """What a healthy node shows, in ``unit``."""
    unit: str = ""
    detail: str = ""
    """One line for a human (and the Slurm drain reason)."""
    action: Action = Action.NONE
    device: str | None = None
    """The GPU / rank the result is about (``cuda:3``, ``00000000:53:00.0``, ``rank1``); None: the node."""

    @property
    def ratio(self) -> float | None:
        """measured / expected, when both are numbers and expected is not zero."""
        if self.measured is None or not self.expected:
            return None
        return self.measured / self.expected

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check, "status": self.status.value, "tier": self.tier.value,
            "measured": self.measured, "expected": self.expected, "unit": self.unit,
            "detail": self.detail, "action": self.action.value, "device": self.device,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CheckResult:
        return cls(
            check=str(doc["check"]), status=Status(doc["status"]), tier=Tier(doc.get("tier", "quick")),
            measured=_float(doc.get("measured")), expected=_float(doc.get("expected")),
            unit=str(doc.get("unit", "")), detail=str(doc.get("detail", "")),
            action=Action(doc.get("action", "NONE")), device=doc.get("device"),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; PASS for an empty list."""
    found = list(statuses)
    return max(found, key=lambda s: s.severity) if found else Status.PASS


@dataclass(frozen=True, kw_only=True)
class NodeReport:
    """Every check of the tiers that ran on one node."""

    node: str
    """Hostname, Slurm node name or instance id: whatever the caller names the node by."""
    tiers: tuple[Tier, ...]
    results: tuple[CheckResult, ...]
    instance_type: str | None = None
    gpu_model: str | None = None
    """Model the checks expected (``H100``, ``cpu``)."""
    started_at: str = ""
    """ISO-8601 UTC."""
    duration_s: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Raw figures for benchmarks (per-size all-reduce, per-device GEMM); not used by verdicts."""

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.results)

    @property
    def passed(self) -> bool:
        """True unless some check FAILed (WARN still passes: it asks for monitoring only)."""
        return self.status is not Status.FAIL

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status is Status.FAIL)

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status is Status.WARN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "status": self.status.value, "tiers": [t.value for t in self.tiers],
            "instance_type": self.instance_type, "gpu_model": self.gpu_model,
            "started_at": self.started_at, "duration_s": round(self.duration_s, 3),
            "results": [r.to_dict() for r in self.results], "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NodeReport:
        return cls(
            node=str(doc["node"]), tiers=tuple(Tier(t) for t in doc.get("tiers", [])),
            results=tuple(CheckResult.from_dict(r) for r in doc.get("results", [])),
            instance_type=doc.get("instance_type"), gpu_model=doc.get("gpu_model"),
            started_at=str(doc.get("started_at", "")), duration_s=float(doc.get("duration_s", 0.0)),
            extra=dict(doc.get("extra", {})),
        )

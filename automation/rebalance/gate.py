"""The health gate seam: new capacity serves nothing until it passes.

``HealthGate.check`` gets the new instance ids and says which passed. ``NodeCheckGate`` adapts
the node health checks (``automation.health_gate``: a probe runs the checks on each node);
``AcceptAllGate`` is for fleets with no way to reach their nodes and says so in its verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class GateVerdict:
    passed: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    """Instance id -> why it failed."""
    summary: str = ""


class HealthGate(Protocol):
    def check(self, instance_ids: Sequence[str]) -> GateVerdict: ...


class AcceptAllGate:
    """Passes every node without looking: only where no probe can reach the nodes."""

    def check(self, instance_ids: Sequence[str]) -> GateVerdict:
        return GateVerdict(passed=list(instance_ids), summary="no health probe configured: nodes accepted unchecked")


class NodeCheckGate:
    """Runs ``automation.health_gate.gate`` with a probe and the given tiers."""

    def __init__(self, probe: Any, tiers: Sequence[str] = ("quick",)) -> None:
        self.probe = probe
        self.tiers = tuple(tiers)

    def check(self, instance_ids: Sequence[str]) -> GateVerdict:
        from automation import health_gate

        report = health_gate.gate(list(instance_ids), self.probe, self.tiers)
        return verdict_of(report, instance_ids)


def verdict_of(report: Any, instance_ids: Sequence[str]) -> GateVerdict:
    """Read a GateReport: ``passed``/``failed`` collections, or per-node results with ``ok``."""
    passed_ids = getattr(report, "passed", None)
    if passed_ids is not None and not callable(passed_ids):
        passed = [i for i in instance_ids if i in set(passed_ids)]
    else:
        nodes = getattr(report, "nodes", None) or getattr(report, "results", [])
        ok = {getattr(n, "node", getattr(n, "name", None)) for n in nodes if getattr(n, "ok", getattr(n, "passed", False))}
        passed = [i for i in instance_ids if i in ok]
    failed = {i: "failed the health gate" for i in instance_ids if i not in passed}
    return GateVerdict(passed=passed, failed=failed, summary=str(getattr(report, "summary", "")))


def default_gate(inventory: Any) -> HealthGate:
    """The node checks when the health gate module is installed; otherwise nodes pass unchecked (said so)."""
    try:
        from automation import health_gate
    except ImportError:
        return AcceptAllGate()
    return NodeCheckGate(health_gate.LocalProbe())

"""The health gate seam: new capacity serves nothing until it passes.

``HealthGate.check(stack, instance_ids)`` says which of the new instances in ``stack`` passed.
``NodeCheckGate`` runs the node health checks through ``automation.health_gate`` with a probe:
``ssm`` (SSM Run Command on the instances, in the destination account) or ``local`` (this host
stands in for every node: the sandbox, whose instances are emulated). ``none`` accepts every node
unchecked, and says so in its verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

PROBES = ("ssm", "local", "none")


@dataclass(frozen=True, kw_only=True)
class GateVerdict:
    passed: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    """Instance id -> why it failed."""
    summary: str = ""


class HealthGate(Protocol):
    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict: ...


class AcceptAllGate:
    """Passes every node without looking (``--probe none``)."""

    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict:
        return GateVerdict(passed=list(instance_ids), summary="no health probe (--probe none): nodes accepted unchecked")


class NodeCheckGate:
    """``automation.health_gate.gate`` over the nodes, with the probe made for their stack."""

    def __init__(self, probe_for: Callable[[str], Any], tiers: Sequence[str] = ("quick",)) -> None:
        self.probe_for = probe_for
        self.tiers = tuple(tiers)

    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict:
        from automation import health_gate

        report = health_gate.gate(list(instance_ids), self.probe_for(stack), self.tiers)
        return GateVerdict(passed=list(report.passed),
                           failed={node: "; ".join(reasons) for node, reasons in report.failed.items()},
                           summary=report.summary)


def make_gate(probe: str, tiers: Sequence[str], session_for: Callable[[str], Any]) -> HealthGate:
    """``session_for(stack)``: the boto3 session of that stack's account (for SSM)."""
    from automation import health_gate

    if probe == "none":
        return AcceptAllGate()
    if probe == "local":
        return NodeCheckGate(lambda stack: health_gate.LocalProbe(), tiers)
    if probe == "ssm":
        return NodeCheckGate(lambda stack: health_gate.SsmProbe(session_for(stack)), tiers)
    from automation.errors import BadInputError

    raise BadInputError(f"--probe {probe!r}: expected one of {', '.join(PROBES)}")

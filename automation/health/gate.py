"""The health gate: new or suspect nodes serve nothing until their health checks pass.

Interface (core: no typer, no rich)::

    probe = SsmProbe(boto3_session)          # real nodes, through SSM Run Command
    probe = LocalProbe()                     # this host stands in for every node (the sandbox)
    report = gate(["i-0abc...", ...], probe, tiers=("quick", "performance"))
    report.ok                                # every node passed
    report.passed, report.failed             # ids; {id: (reason, ...)}
    report.nodes                             # NodeVerdict per node, with its NodeReport

Probes (``probe.py``) run the checks on each node; an unreachable node fails the gate without
stopping it. ``HealthGate`` is the rebalancer's seam (``check(stack, instance_ids)``). With the performance tier
and three or more nodes of one GPU model, the gate also compares the nodes with each other
(straggler detection on each node's median GEMM, memory bandwidth and all-reduce figures). With
the deep tier, each new node whose own checks passed runs a two-node all-reduce with a known-good
peer of its pool (``peer.py``; a probe with ``peer_candidates`` and ``allreduce_with``), graded
against the catalog and against the other new nodes' figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gpufleet.automation.health import peer as peer_check
from gpufleet.automation.health.probe import LocalProbe, NodeProbe, SsmProbe, probe_failure
from gpufleet.lifecycle.health.expected import for_model
from gpufleet.lifecycle.health.performance import pool_stragglers
from gpufleet.lifecycle.health.results import (
    CheckResult,
    NodeReport,
    Status,
    Tier,
    parse_tiers,
)

POOL_CHECKS = ("gemm_bf16", "gemm_fp16", "gemm_fp32", "memory_bandwidth", "allreduce_busbw", peer_check.CHECK)

@dataclass(frozen=True, kw_only=True)
class NodeVerdict:
    node: str
    ok: bool
    """Passed: no check FAILed, and not a straggler of its pool."""
    status: Status
    reasons: tuple[str, ...] = ()
    """``check: detail`` of each failure."""
    report: NodeReport | None = None


@dataclass(frozen=True, kw_only=True)
class GateReport:
    tiers: tuple[Tier, ...]
    nodes: tuple[NodeVerdict, ...]
    passed: tuple[str, ...]
    failed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pool_results: tuple[CheckResult, ...] = ()
    """Straggler results across the nodes (device = node)."""

    @property
    def ok(self) -> bool:
        return not self.failed and len(self.passed) == len(self.nodes)

    @property
    def skipped(self) -> dict[str, str]:
        """Node -> why its peer all-reduce did not run (deep tier): said, never passed silently."""
        return {v.node: r.detail for v in self.nodes if v.report for r in v.report.results
                if r.check == peer_check.CHECK and r.status is Status.SKIP}

    @property
    def summary(self) -> str:
        skipped = "".join(f"; {n}: {why}" for n, why in self.skipped.items())
        if self.ok:
            return f"{len(self.passed)} node(s) passed {'+'.join(t.value for t in self.tiers)}{skipped}"
        return "; ".join(f"{n}: {', '.join(r)}" for n, r in self.failed.items()) + skipped

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tiers": [t.value for t in self.tiers], "passed": list(self.passed),
                "failed": {k: list(v) for k, v in self.failed.items()}, "skipped": self.skipped,
                "pool_results": [r.to_dict() for r in self.pool_results],
                "nodes": [{"node": v.node, "ok": v.ok, "status": v.status.value, "reasons": list(v.reasons),
                           "report": v.report.to_dict() if v.report else None} for v in self.nodes]}


def _tiers(tiers: Sequence[Tier | str]) -> tuple[Tier, ...]:
    return tuple(t if isinstance(t, Tier) else parse_tiers(t)[0] for t in tiers)


def gate(nodes: Sequence[str], probe: NodeProbe, tiers: Sequence[Tier | str] = (Tier.QUICK, Tier.PERFORMANCE),
         *, progress: Callable[[NodeReport], None] | None = None,
         straggler_fail_pct: int | None = None,
         peers: Sequence[peer_check.PeerCandidate] | None = None) -> GateReport:
    """Probe every node (``probe.max_parallel`` at a time) and judge: all must pass.

    ``straggler_fail_pct``: a node this many percent or more below its pool's median fails (the
    stack's ``healthGate.stragglerFailPct``); None: the catalog's ratio for the GPU model.
    ``peers``: the nodes a deep tier's peer may be chosen from (with the new nodes themselves);
    None: the probe's ``peer_candidates``."""
    wanted = _tiers(tiers)

    def one(node: str) -> NodeReport:
        try:
            report = probe.probe(node, wanted)
        except Exception as err:  # one broken node must not stop the gate for the others
            report = probe_failure(node, wanted, f"probe raised {type(err).__name__}: {err}")
        if progress:
            progress(report)
        return report

    with ThreadPoolExecutor(max(1, min(getattr(probe, "max_parallel", 1), len(nodes) or 1))) as pool:
        reports = list(pool.map(one, nodes))
    if Tier.DEEP in wanted:
        reports = _with_peer_allreduce(reports, probe, peers)
    compared = Tier.PERFORMANCE in wanted or Tier.DEEP in wanted
    pool_results = _pool_stragglers(reports, straggler_fail_pct) if compared else []
    stragglers: dict[str, list[str]] = {}
    for r in pool_results:
        if r.status is Status.FAIL and r.device:
            stragglers.setdefault(r.device, []).append(f"straggler: {r.detail}")
    verdicts = []
    for report in reports:
        reasons = tuple(f"{r.check}: {r.detail}" for r in report.failures) + tuple(stragglers.get(report.node, []))
        verdicts.append(NodeVerdict(node=report.node, ok=not reasons, status=report.status, reasons=reasons,
                                    report=report))
    return GateReport(tiers=wanted, nodes=tuple(verdicts), passed=tuple(v.node for v in verdicts if v.ok),
                      failed={v.node: v.reasons for v in verdicts if not v.ok}, pool_results=tuple(pool_results))


def _with_peer_allreduce(reports: list[NodeReport], probe: NodeProbe,
                         peers: Sequence[peer_check.PeerCandidate] | None) -> list[NodeReport]:
    """Each new node whose own checks passed, all-reduced with a known-good peer, one pair at a
    time (a peer serves several newcomers; overlapping pairs would measure each other)."""
    run = getattr(probe, "allreduce_with", None)
    lister = getattr(probe, "peer_candidates", None)
    names = [r.node for r in reports]
    candidates: Sequence[peer_check.PeerCandidate] | None = peers
    problem = ""
    if run is None:
        problem = f"{type(probe).__name__} cannot run a two-node all-reduce"
    elif candidates is None and lister is None:
        problem = f"{type(probe).__name__} lists no peers"
    elif candidates is None:
        try:
            candidates = lister(names)
        except Exception as err:  # the gate reports it on every node rather than stop
            problem = f"listing peers: {type(err).__name__}: {err}"
    out = []
    for report in reports:
        if report.failures:
            out.append(report)
            continue
        if problem:
            result = peer_check.skipped(problem)
        else:
            chosen, why = peer_check.choose_peer(report.node, candidates or (), exclude=names)
            if chosen is None:
                result = peer_check.skipped(why)
            else:
                try:
                    pair = run(report.node, chosen.name)
                except Exception as err:  # one broken pair must not stop the gate for the others
                    pair = probe_failure(report.node, (Tier.DEEP,), f"probe raised {type(err).__name__}: {err}")
                try:
                    exp = for_model(report.gpu_model) if report.gpu_model else None
                except KeyError:
                    exp = None
                result = peer_check.peer_result(pair, chosen.name, exp)
        out.append(replace(report, results=(*report.results, result)))
    return out


def _pool_stragglers(reports: Sequence[NodeReport], fail_pct: int | None = None) -> list[CheckResult]:
    """Nodes of the same model compared with each other, check by check."""
    results: list[CheckResult] = []
    by_model: dict[str, list[NodeReport]] = {}
    for report in reports:
        if report.gpu_model:
            by_model.setdefault(report.gpu_model, []).append(report)
    for model, group in by_model.items():
        try:
            exp = for_model(model)
        except KeyError:
            continue
        if fail_pct is not None:
            fail_ratio = 1 - fail_pct / 100 + 1e-9  # "8 % or more below": exactly 8 % fails too
            exp = replace(exp, straggler_fail_ratio=fail_ratio,
                          straggler_warn_ratio=max(exp.straggler_warn_ratio, fail_ratio))
        for check in POOL_CHECKS:
            results += pool_stragglers(group, check, exp)
    return results


# -- the rebalancer's seam ----------------------------------------------------------------------
PROBES = ("orchestrator", "ssm", "local", "none")
"""orchestrator: where the node lives (a Kubernetes Job on it, srun onto it, or the sandbox's
emulated instance); ssm: SSM Run Command; local: this host stands in; none: accepted unchecked."""


@dataclass(frozen=True, kw_only=True)
class GateVerdict:
    passed: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    """Instance id -> why it failed."""
    summary: str = ""
    nodes: list[dict[str, Any]] = field(default_factory=list)
    """Each node's health as `health` prints it (``node``, ``ok``, ``status``, ``reasons``), without its
    checks: journaled with the move, shown by `rebalance show`."""


class HealthGate(Protocol):
    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict: ...


class AcceptAllGate:
    """Passes every node without looking (``--probe none``)."""

    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict:
        return GateVerdict(passed=list(instance_ids), summary="no health probe (--probe none): nodes accepted unchecked",
                           nodes=[{"node": i, "ok": True, "status": Status.SKIP.value,
                                   "reasons": ["no health probe (--probe none)"]} for i in instance_ids])


class NodeCheckGate:
    """``gate`` over the nodes, with the probe made for their stack."""

    def __init__(self, probe_for: Callable[[str], Any], tiers: Sequence[str] = ("quick",), *,
                 straggler_fail_pct: int | None = None) -> None:
        self.probe_for = probe_for
        self.tiers = tuple(tiers)
        self.straggler_fail_pct = straggler_fail_pct

    def check(self, stack: str, instance_ids: Sequence[str]) -> GateVerdict:
        report = gate(list(instance_ids), self.probe_for(stack), self.tiers, straggler_fail_pct=self.straggler_fail_pct)
        return GateVerdict(passed=list(report.passed),
                           failed={node: "; ".join(reasons) for node, reasons in report.failed.items()},
                           summary=report.summary,
                           nodes=[{"node": v.node, "ok": v.ok, "status": v.status.value, "reasons": list(v.reasons)}
                                  for v in report.nodes])


def gate_choice(inventory: Any, stack: str, *, probe: str | None = None, tiers: Sequence[str] | None = None,
                journaled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How new nodes of ``stack`` are gated, as journaled with the move: a flag, else the journaled
    choice (a resumed move is gated the same way), else the stack's ``healthGate``. A probe the
    account forbids (SSM where the stack holds PHI) is a BadInputError, before any call."""
    from gpufleet.infra.errors import BadInputError

    journaled = journaled or {}
    configured = inventory.stacks[stack].health_gate
    choice = {
        "probe": probe or journaled.get("probe") or (configured.probe if configured else "orchestrator"),
        "tiers": list(tiers or journaled.get("tiers") or (configured.tiers if configured else ("quick",))),
        "stragglerFailPct": journaled.get("stragglerFailPct", configured.straggler_fail_pct if configured else None),
        "dcgmLevel": journaled.get("dcgmLevel", configured.dcgm_level if configured else 2),
    }
    if choice["probe"] not in PROBES:
        raise BadInputError(f"--probe {choice['probe']!r}: expected one of {', '.join(PROBES)}")
    if choice["probe"] == "ssm" and configured is not None and not configured.ssm_allowed:
        raise BadInputError(f"--probe ssm: stack {stack} holds PHI and its account forbids SSM "
                            "(no SSM instance role, endpoints or ssm:* for the operator)",
                            "use the stack's own probe (omit --probe): a Kubernetes Job on the node, or srun")
    return choice


ProbeFor = Callable[[str, str], Any]
"""(kind, stack) -> a NodeProbe: ``orchestrator_probe`` unless a caller brings its own."""


def make_gate(choice: Mapping[str, Any], session_for: Callable[[str], Any], *,
              orchestrator_probe: Callable[[str], Any] | None = None) -> HealthGate:
    """The gate of a ``gate_choice``. ``session_for(stack)``: the stack account's boto3 session
    (SSM); ``orchestrator_probe(stack)``: the probe that runs where the stack's nodes live (made
    with the choice's ``dcgmLevel``)."""
    probe, tiers, pct, level = choice["probe"], choice["tiers"], choice.get("stragglerFailPct"), choice.get("dcgmLevel")
    if probe == "none":
        return AcceptAllGate()
    if probe == "local":
        return NodeCheckGate(lambda stack: LocalProbe(dcgm_level=level), tiers, straggler_fail_pct=pct)
    if probe == "ssm":
        return NodeCheckGate(lambda stack: SsmProbe(session_for(stack), dcgm_level=level), tiers, straggler_fail_pct=pct)
    if probe == "orchestrator" and orchestrator_probe is not None:
        return NodeCheckGate(orchestrator_probe, tiers, straggler_fail_pct=pct)
    from gpufleet.infra.errors import BadInputError

    raise BadInputError(f"--probe {probe!r}: expected one of {', '.join(PROBES)}")

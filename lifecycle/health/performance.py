"""Performance tier: measured figures (from ``ranks``) against the model's expected table, and the
straggler detector across the node's devices.

``verdicts`` is pure (measured document in, CheckResults out); ``run_performance`` measures for real.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpufleet.lifecycle.health import stragglers
from gpufleet.lifecycle.health.expected import ModelExpectation, for_model
from gpufleet.lifecycle.health.results import Action, CheckResult, NodeReport, Status, Tier
from gpufleet.lifecycle.health.settings import HealthSettings

UNITS = {"gemm": "TFLOP/s", "memory_bandwidth": "GB/s", "h2d_bandwidth": "GB/s", "d2h_bandwidth": "GB/s"}


def _unit(check: str) -> str:
    return UNITS.get(check.split("_")[0], UNITS.get(check, ""))


def expected_for(check: str, exp: ModelExpectation) -> float | None:
    if check.startswith("gemm_"):
        return exp.gemm_tflops(check.removeprefix("gemm_"))
    if check == "memory_bandwidth":
        return exp.memory_gbps
    if check in {"h2d_bandwidth", "d2h_bandwidth"}:
        return exp.host_device_gbps
    return None


def grade(check: str, measured: float, expected: float, exp: ModelExpectation, *, device: str | None = None,
          tier: Tier = Tier.PERFORMANCE, unit: str | None = None, what: str | None = None) -> CheckResult:
    """PASS at or above warn_fraction of expected, WARN down to fail_fraction, FAIL below."""
    ratio = measured / expected if expected else 1.0
    unit = unit if unit is not None else _unit(check)
    text = f"{what or check}{' on ' + device if device else ''}: {measured:.4g} {unit} = {ratio:.0%} of {expected:.4g}"
    if ratio < exp.fail_fraction:
        status, action = Status.FAIL, Action.ISOLATE
    elif ratio < exp.warn_fraction:
        status, action = Status.WARN, Action.MONITOR
    else:
        status, action = Status.PASS, Action.NONE
    return CheckResult(check=check, status=status, tier=tier, measured=measured, expected=expected, unit=unit,
                       detail=text, action=action, device=device)


def straggler_results(check: str, values: Mapping[str, float], exp: ModelExpectation, *,
                      tier: Tier = Tier.PERFORMANCE, peers: str = "devices") -> list[CheckResult]:
    """One result per straggler among ``values`` (FAIL below straggler_fail_ratio, else WARN)."""
    found = stragglers.find_stragglers(values, max_ratio=exp.straggler_warn_ratio)
    results = []
    for s in found:
        failing = s.ratio < exp.straggler_fail_ratio
        results.append(CheckResult(
            check="straggler", status=Status.FAIL if failing else Status.WARN, tier=tier, measured=s.value,
            expected=s.median, unit=_unit(check), device=s.member,
            action=Action.ISOLATE if failing else Action.MONITOR,
            detail=f"{check} on {s.member}: {s.ratio:.0%} of the median of {len(values)} {peers} (z={s.robust_z:.1f})",
        ))
    return results


def verdicts(doc: Mapping[str, Any], exp: ModelExpectation, *, device_label: str) -> list[CheckResult]:
    """CheckResults of one node's measured document (as ``ranks.rank_main`` writes it)."""
    results: list[CheckResult] = []
    per_check: dict[str, dict[str, float]] = {}
    for entry in doc["ranks"]:
        device = f"{device_label}{entry['rank']}"
        for check, value in entry["figures"].items():
            per_check.setdefault(check, {})[device] = value
            expected = expected_for(check, exp)
            if expected:
                results.append(grade(check, value, expected, exp, device=device))
    found = []
    for check, values in per_check.items():
        found += straggler_results(check, values, exp)
    if not found and per_check:
        n = max(len(v) for v in per_check.values())
        results.append(CheckResult(check="straggler", status=Status.PASS if n >= 3 else Status.SKIP,
                                   tier=Tier.PERFORMANCE,
                                   detail=f"no straggler among {n} {device_label}s" if n >= 3
                                   else f"{n} {device_label}s: too few peers to compare"))
    results += found
    figures = doc.get("allreduce", [])
    if doc.get("world", 1) > 1 and figures:
        largest = max(figures, key=lambda f: f["nbytes"])
        results.append(grade("allreduce_busbw", largest["busbw_gbps"], exp.allreduce_busbw_gbps, exp, unit="GB/s",
                             what=f"all-reduce busbw at {largest['nbytes'] >> 20} MiB over {doc['world']} ranks"))
    else:
        results.append(CheckResult(check="allreduce_busbw", status=Status.SKIP, tier=Tier.PERFORMANCE,
                                   detail="one device: no all-reduce"))
    return results


def node_devices(settings: HealthSettings, cpu_ranks: int) -> tuple[str, int, str, str | None]:
    """(backend, number of ranks, model, problem): the GPUs torch sees, or CPU ranks."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if settings.expected_gpus and gpus < settings.expected_gpus:
        return "nccl", gpus, settings.gpu_model, f"torch sees {gpus} of {settings.expected_gpus} GPUs"
    if gpus:
        from gpufleet.lifecycle.health.nvidia_smi import model_of

        model = settings.gpu_model if settings.gpu_model != "cpu" else model_of(torch.cuda.get_device_name(0))
        return "nccl", gpus, model, None
    return "gloo", cpu_ranks, "cpu", None


def run_performance(settings: HealthSettings, *, cpu_ranks: int = 2,
                    timeout_s: float = 600.0) -> tuple[list[CheckResult], dict[str, Any]]:
    """Measure on every device of this node and grade; the raw document goes to the report's extra."""
    from gpufleet.lifecycle.health.ranks import MeasurementFailed, measure_node

    backend, nprocs, model, problem = node_devices(settings, cpu_ranks)
    if problem:
        return [CheckResult(check="cuda", status=Status.FAIL, tier=Tier.PERFORMANCE, detail=problem,
                            action=Action.REBOOT)], {}
    try:
        exp = for_model(model)
    except KeyError as err:
        return [CheckResult(check="performance", status=Status.SKIP, tier=Tier.PERFORMANCE, detail=str(err))], {}
    with tempfile.TemporaryDirectory(prefix="gpufleet-health-") as tmp:
        try:
            doc = measure_node(model, nprocs, backend, Path(tmp) / "ranks.json", timeout_s)
        except MeasurementFailed as err:
            return [CheckResult(check="performance", status=Status.FAIL, tier=Tier.PERFORMANCE, detail=str(err),
                                action=Action.REBOOT)], {}
    results = verdicts(doc, exp, device_label="cuda:" if backend == "nccl" else "rank")
    if backend == "gloo":
        results.append(CheckResult(check="h2d_bandwidth", status=Status.SKIP, tier=Tier.PERFORMANCE,
                                   detail="no GPU: host-device copies do not apply"))
    return results, {"performance": doc}


def node_figure(report: NodeReport, check: str) -> float | None:
    """The median of a node's per-device figures of one check (None when it has none)."""
    values = sorted(r.measured for r in report.results if r.check == check and r.measured is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def pool_stragglers(reports: Sequence[NodeReport], check: str, exp: ModelExpectation) -> list[CheckResult]:
    """Stragglers among the nodes of one pool, by each node's median figure of ``check``."""
    values = {r.node: v for r in reports if (v := node_figure(r, check)) is not None}
    return straggler_results(check, values, exp, peers="nodes")

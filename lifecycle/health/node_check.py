"""Runs the checks of the requested tiers on this node and assembles the NodeReport."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gpufleet.lifecycle.health import deep, quick
from gpufleet.lifecycle.health.results import CheckResult, NodeReport, Tier
from gpufleet.lifecycle.health.runner import CommandRunner, SubprocessRunner
from gpufleet.lifecycle.health.settings import HealthSettings


def check_node(settings: HealthSettings, tiers: Sequence[Tier], runner: CommandRunner | None = None, *,
               cpu_ranks: int = 2, dcgm_level: int = 3, multinode: deep.MultiNodeSpec | None = None,
               dcgm: bool = True) -> NodeReport:
    """Every check of ``tiers``, in tier order. Torch is imported only when a tier needs it.
    ``dcgm=False``: the deep tier runs only the multi-node all-reduce (the gate's peer all-reduce,
    where the newcomer's DCGM diagnostics already ran and the peer is an admitted node)."""
    runner = runner or SubprocessRunner()
    started = datetime.now(UTC)
    begin = time.monotonic()
    results: list[CheckResult] = []
    extra: dict[str, Any] = {}
    if Tier.QUICK in tiers:
        results += quick.run_quick(settings, runner)
    if Tier.PERFORMANCE in tiers:
        from gpufleet.lifecycle.health.performance import run_performance

        perf, raw = run_performance(settings, cpu_ranks=cpu_ranks)
        results += perf
        extra.update(raw)
    if Tier.DEEP in tiers:
        if dcgm:
            results += deep.check_dcgm(runner, dcgm_level)
        if multinode is not None:
            results.append(deep.check_multinode_allreduce(multinode))
    return NodeReport(node=settings.node, tiers=tuple(tiers), results=tuple(results),
                      instance_type=settings.instance_type, gpu_model=settings.gpu_model,
                      started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - begin,
                      extra=extra)

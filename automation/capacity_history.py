"""Capacity over time per pool and consumer, for ``gpufleet status --chart``.

Made from the node lives the usage ledger already reads (gpufleet.automation.usage.sources: each
group's DescribeScalingActivities, launch and terminate, plus the instances it holds now): the
fallback of the CloudWatch group metrics (gpufleet.automation.capacity_metrics) when a group has
none, as EKS managed groups and the sandbox do; the activities are kept six weeks in real AWS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.automation.usage.spans import NodeSpan


@dataclass(frozen=True, kw_only=True)
class CapacitySeries:
    """How many nodes one consumer held in one pool, as a step function over the window."""

    pool: str
    role: str
    """training or inference: the consumer account's role."""
    times: tuple[float, ...]
    """Epoch seconds: the window's start, every launch or end inside it, and the window's end."""
    nodes: tuple[int, ...]
    """Nodes held from ``times[i]`` until ``times[i + 1]`` (the last value repeats the one before)."""


def capacity_series(nodes: Iterable[NodeSpan], since: float, now: float) -> list[CapacitySeries]:
    """Per (pool, role), the count of live nodes from ``since`` to ``now``, sorted by pool then role."""
    changes: dict[tuple[str, str], dict[float, int]] = {}
    for span in nodes:
        end = now if span.end is None else min(span.end, now)
        start = max(span.start, since)
        steps = changes.setdefault((span.pool, span.role), {})
        if end <= start:
            continue
        steps[start] = steps.get(start, 0) + 1
        if end < now:
            steps[end] = steps.get(end, 0) - 1
    out = []
    for (pool, role), steps in sorted(changes.items()):
        times, counts, held = [since], [0], 0
        for at in sorted(steps):
            held += steps[at]
            if at == times[-1]:
                counts[-1] = held
            else:
                times.append(at)
                counts.append(held)
        times.append(now)
        counts.append(held)
        out.append(CapacitySeries(pool=pool, role=role, times=tuple(times), nodes=tuple(counts)))
    return out

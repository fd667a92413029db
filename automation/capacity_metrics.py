"""Capacity over time from the Auto Scaling groups' CloudWatch group metrics, for ``status --chart``.

Each consumer node group's ``GroupInServiceInstances`` (namespace AWS/AutoScaling, one datapoint a
minute once group metrics are enabled on the group) through GetMetricData, summed per pool and
consumer. A group that has no datapoints in the window (metrics collection not enabled on it, as
for EKS managed node groups, whose groups EKS creates; or an emulator that emits none) makes the
whole chart fall back to the scaling activities (gpufleet.automation.capacity_history), and the
chart says which source it drew.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpufleet.automation.capacity_history import CapacitySeries
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup

METRIC = "GroupInServiceInstances"
PERIOD_S = 60
MAX_PAGES = 50
"""GetMetricData returns at most 100,800 datapoints a call: 50 pages cover six weeks a minute apart."""


@dataclass(frozen=True, kw_only=True)
class GroupMetrics:
    """What GetMetricData gave for one node group."""

    group: StackNodeGroup
    points: tuple[tuple[float, float], ...]
    """(epoch seconds, in-service instances), oldest first."""


def read_group(client: Any, group: StackNodeGroup, since: float, now: float) -> GroupMetrics:
    """The group's GroupInServiceInstances over the window, every page (bounded)."""
    query = {"Id": "inservice", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/AutoScaling", "MetricName": METRIC,
                   "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group.group.asg_name}]},
        "Period": PERIOD_S, "Stat": "Average"}}
    points: dict[float, float] = {}
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = client.get_metric_data(MetricDataQueries=[query], StartTime=datetime.fromtimestamp(since, UTC),
                                      EndTime=datetime.fromtimestamp(now, UTC), ScanBy="TimestampAscending",
                                      **({"NextToken": token} if token else {}))
        for result in page.get("MetricDataResults", []):
            for at, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=True):
                points[at.timestamp()] = float(value)
        token = page.get("NextToken")
        if not token:
            break
    return GroupMetrics(group=group, points=tuple(sorted(points.items())))


def metric_series(groups: Sequence[GroupMetrics], since: float, now: float) -> list[CapacitySeries]:
    """Per (pool, role), the groups' in-service counts summed, as step functions from ``since`` to
    ``now``: a group counts its latest datapoint until the next (0 before its first)."""
    by_key: dict[tuple[str, str], list[GroupMetrics]] = {}
    for g in groups:
        by_key.setdefault((g.group.group.pool, g.group.role), []).append(g)
    out = []
    for (pool, role), members in sorted(by_key.items()):
        times = sorted({since, now, *(t for g in members for t, _ in g.points if since <= t <= now)})
        stamps = [[t for t, _ in g.points] for g in members]
        nodes = []
        for at in times:
            held = 0
            for g, ts in zip(members, stamps, strict=True):
                i = bisect_right(ts, at)
                held += round(g.points[i - 1][1]) if i else 0
            nodes.append(held)
        out.append(CapacitySeries(pool=pool, role=role, times=tuple(times), nodes=tuple(nodes)))
    return out


def read(fleet: FleetInventory, clients: Any, since: float, now: float,
         pools: set[str] | None = None) -> tuple[list[CapacitySeries] | None, list[str]]:
    """(the series, []) when every consumer group of ``pools`` has datapoints; else (None, the groups
    without any), for the caller to fall back to the scaling activities. ``clients``: (stack,
    service) -> a boto3-style client."""
    groups = [g for g in fleet.node_groups if pools is None or g.group.pool in pools]
    read_back = [read_group(clients(g.stack, "cloudwatch"), g, since, now) for g in groups]
    missing = [f"{m.group.stack}/{m.group.group.name}" for m in read_back if not m.points]
    if missing or not read_back:
        return None, missing
    return metric_series(read_back, since, now), []

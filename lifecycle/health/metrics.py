"""Prometheus textfile export of a NodeReport (node_exporter's textfile collector reads it).

Metric names (the monitoring alert rules use them; documented in docs/health.md):

    gpufleet_health_check_status{check,tier,device,action}   0 pass, 1 warn, 2 fail, -1 skip
    gpufleet_health_check_measured{check,tier,device,unit}   the measured figure
    gpufleet_health_check_expected{check,tier,device,unit}   what a healthy node shows
    gpufleet_health_node_status{tier}                        worst status of the tiers that ran
    gpufleet_health_last_run_timestamp_seconds{tier}         when the tiers last ran (unix time)
    gpufleet_health_run_duration_seconds{tier}               how long they took

``device`` is "" for node-wide checks; the node itself is the scrape target's ``instance`` label.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from gpufleet.lifecycle.health.results import NodeReport, worst

PREFIX = "gpufleet_health_"
HELP = {
    "check_status": "Verdict of a health check: 0 pass, 1 warn, 2 fail, -1 skip.",
    "check_measured": "Figure a health check measured, in the unit label.",
    "check_expected": "Figure a healthy node shows for the check, in the unit label.",
    "node_status": "Worst health check verdict of the node for the tiers that ran (0 pass, 1 warn, 2 fail).",
    "last_run_timestamp_seconds": "Unix time the health checks of the tier last finished.",
    "run_duration_seconds": "Seconds the health checks of the tier took.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def render(report: NodeReport) -> str:
    """The textfile body (exposition format 0.0.4), one HELP/TYPE block per metric."""
    series: dict[str, list[str]] = {name: [] for name in HELP}
    tier_label = ",".join(t.value for t in report.tiers)
    seen: set[tuple[str, str, str]] = set()
    for r in report.results:
        key = (r.check, r.tier.value, r.device or "")
        if key in seen:  # one series per (check, tier, device): keep the first (worst are listed per device)
            continue
        seen.add(key)
        same = [x for x in report.results if (x.check, x.tier.value, x.device or "") == key]
        status = worst(x.status for x in same)
        base = {"check": r.check, "tier": r.tier.value, "device": r.device or ""}
        series["check_status"].append(f"{PREFIX}check_status{_labels(**base, action=r.action.value)} {status.metric_value}")
        if r.measured is not None:
            series["check_measured"].append(f"{PREFIX}check_measured{_labels(**base, unit=r.unit)} {r.measured:.6g}")
        if r.expected is not None:
            series["check_expected"].append(f"{PREFIX}check_expected{_labels(**base, unit=r.unit)} {r.expected:.6g}")
    series["node_status"].append(f"{PREFIX}node_status{_labels(tier=tier_label)} {report.status.metric_value}")
    try:
        finished = datetime.fromisoformat(report.started_at).timestamp() + report.duration_s
    except ValueError:
        finished = 0.0
    series["last_run_timestamp_seconds"].append(f"{PREFIX}last_run_timestamp_seconds{_labels(tier=tier_label)} {finished:.3f}")
    series["run_duration_seconds"].append(f"{PREFIX}run_duration_seconds{_labels(tier=tier_label)} {report.duration_s:.3f}")
    lines = []
    for name, rows in series.items():
        if rows:
            lines += [f"# HELP {PREFIX}{name} {HELP[name]}", f"# TYPE {PREFIX}{name} gauge", *rows]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, report: NodeReport) -> None:
    """Write atomically (temporary file in the same directory, then rename) so a scrape never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

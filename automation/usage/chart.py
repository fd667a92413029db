"""``gpufleet usage --chart``: GPUs per account and class over time (stacked), moves marked."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpufleet.automation import figures
from gpufleet.automation.usage.ledger import HOUR_S, Ledger
from gpufleet.automation.usage.spans import CLASSES, MovePhase


def figure(ledger: Ledger, phases: Sequence[MovePhase] = ()) -> Any:
    """The matplotlib Figure: one stacked band per (stack, class), average GPUs in each hour."""
    import matplotlib.dates as mdates

    hours = sorted({row.hour for row in ledger.rows})
    series: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for row in ledger.rows:
        series[(row.stack, row.klass)][row.hour] += row.gpu_hours  # GPU-hours in an hour = average GPUs
    order = {c: i for i, c in enumerate(CLASSES)}
    keys = sorted(series, key=lambda k: (order.get(k[1], 99), k[0]))
    xs = [datetime.datetime.fromtimestamp(h + HOUR_S / 2, datetime.UTC) for h in hours]
    fig = figures.new(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if keys:
        ax.stackplot(xs, [[series[k].get(h, 0.0) for h in hours] for k in keys],
                     labels=[f"{klass} ({stack})" for stack, klass in keys], step=None)
    starts: dict[str, float] = {}
    for phase in phases:
        starts[phase.op_id] = min(phase.start, starts.get(phase.op_id, phase.start))
    marked = sorted(at for at in starts.values() if ledger.start <= at < ledger.end)
    for k, at in enumerate(marked):
        ax.axvline(datetime.datetime.fromtimestamp(at, datetime.UTC), color="black", linewidth=0.8,
                   linestyle="--", label=f"a move starts ({len(marked)})" if k == 0 else None)
    ax.set_title("GPUs by account and class (hourly average)")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("GPUs")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    if keys or marked:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def write(path: Path, ledger: Ledger, phases: Sequence[MovePhase] = ()) -> None:
    figures.save(figure(ledger, phases), path, dpi=100)

"""Charts of a planned split and of simulated policies (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.dates as mdates
from matplotlib.figure import Figure

from gpufleet.automation import figures
from gpufleet.automation.schedule.show import SchedulePlan
from gpufleet.automation.schedule.simulate import Outcome
from gpufleet.automation.schedule.trace import Trace


def plan_figure(result: SchedulePlan) -> Figure:
    """One axes per pool: planned inference and training nodes over time (steps)."""
    pools = list(dict.fromkeys(s.pool for s in result.segments))
    fig = figures.new(figsize=(10, 2.8 * len(pools)))
    axes = fig.subplots(len(pools), 1, squeeze=False)
    for ax, pool in zip(axes[:, 0], pools, strict=True):
        segs = [s for s in result.segments if s.pool == pool]
        times = [s.start for s in segs] + [segs[-1].end]
        ax.step(times, [s.inference for s in segs] + [segs[-1].inference], where="post", label="inference")
        ax.step(times, [s.training for s in segs] + [segs[-1].training], where="post", label="training")
        ax.set_title(f"pool {pool}: planned split")
        ax.set_ylabel("nodes")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))
        ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.tight_layout()
    return fig


def simulation_figure(trace: Trace, outcomes: Sequence[Outcome], days: int = 3) -> Figure:
    """Demand and each policy's serving nodes (top), each policy's training nodes (bottom), over
    the first ``days`` days."""
    minutes = min(len(trace.demand), days * 1440)
    times = [trace.at(m) for m in range(minutes)]
    fig = figures.new(figsize=(11, 6))
    serve, train = fig.subplots(2, 1, sharex=True)
    serve.plot(times, trace.demand[:minutes], label="demand", color="black", linewidth=1)
    for outcome in outcomes:
        if outcome.series:
            serve.step(times, outcome.series["inference"][:minutes], where="post", label=outcome.policy, linewidth=1)
            train.step(times, outcome.series["training"][:minutes], where="post", label=outcome.policy, linewidth=1)
    serve.set_ylabel("inference nodes")
    serve.set_title("demand and serving capacity")
    train.set_ylabel("training nodes")
    train.set_xlabel("time (UTC)")
    train.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))
    serve.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    figures.save(fig, path)

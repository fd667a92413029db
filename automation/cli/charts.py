"""Pictures an operator looks at, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function builds and saves one figure and returns it, so a test can read its axes, series and
labels rather than its pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpufleet.automation.figures import new, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gpufleet.automation.capacity_history import CapacitySeries
    from gpufleet.automation.health.gate import GateReport
    from gpufleet.automation.rebalance.history import MoveDetail


def move_timeline(detail: MoveDetail, path: Path) -> Figure:
    """A Gantt of the move's states: one bar per state, from when it was entered, as long as it lasted."""
    spans = detail.timeline
    fig = new(figsize=(8, 1.4 + 0.35 * max(len(spans), 1)), layout="constrained")
    ax = fig.add_subplot()
    for row, span in enumerate(spans):
        start = span.offset_s
        ended = span.duration_s is None
        ax.barh(row, 0.0 if ended else span.duration_s, left=start, color="tab:gray" if ended else "tab:blue",
                label=span.state)
        if ended:
            ax.plot([start], [row], marker="D", color="tab:green" if span.state == "DONE" else "tab:red")
    ax.set_yticks(range(len(spans)), [s.state for s in spans])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the move was journaled")
    m = detail.move
    ax.set_title(f"{m.op_id}: {m.nodes} x {detail.instance_type}, {m.from_role} -> {m.to_role} ({m.state})")
    save(fig, path)
    return fig


STATUS_COLOURS = {"PASS": "#2ca02c", "WARN": "#ffbf00", "FAIL": "#d62728", "SKIP": "#c7c7c7"}
NOT_RUN = "#ffffff"


def health_grid(report: GateReport, path: Path) -> Figure:
    """Nodes as rows, checks as columns, each cell the worst status of that check on that node."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    from gpufleet.automation.cli.health import grid_cells

    checks, rows = grid_cells(report)
    nodes = [v.node for v in report.nodes]
    cells = [[to_rgb(STATUS_COLOURS[worst[c]]) if c in worst else to_rgb(NOT_RUN) for c in checks] for worst in rows]
    fig = new(figsize=(2.5 + 0.45 * max(len(checks), 1), 2.0 + 0.35 * max(len(nodes), 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(cells or [[to_rgb(NOT_RUN)]], aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(checks)), checks, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(nodes)), [f"{n} ({v.status.value})" for n, v in zip(nodes, report.nodes, strict=True)])
    ax.set_xticks([x - 0.5 for x in range(1, len(checks))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(nodes))], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("check")
    ax.set_ylabel("node")
    ax.set_title(f"health: {len(nodes)} nodes x {len(checks)} checks ({'all pass' if report.ok else 'FAILED'})")
    ax.legend(handles=[Patch(color=c, label=s) for s, c in STATUS_COLOURS.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), title="worst result")
    save(fig, path)
    return fig


ROLE_STYLE = {"training": ("-", "tab:orange"), "inference": ("--", "tab:blue")}


def capacity_over_time(series: list[CapacitySeries], reserved: dict[str, int], since: float, now: float,
                       path: Path, *, source: str = "") -> Figure:
    """One panel per pool: a step line per consumer, and the reservation's size as a dotted line;
    ``source`` (where the counts come from) under the title."""
    pools = sorted({s.pool for s in series} | set(reserved))
    fig = new(figsize=(8, 1.0 + 2.0 * max(len(pools), 1)), layout="constrained")
    axes = fig.subplots(max(len(pools), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, pool in zip(axes, pools, strict=False):
        for s in (s for s in series if s.pool == pool):
            ax.step([(t - now) / 3600 for t in s.times], s.nodes, where="post", label=s.role,
                    linestyle=ROLE_STYLE.get(s.role, ("-.", "tab:purple"))[0],
                    color=ROLE_STYLE.get(s.role, ("-.", "tab:purple"))[1], linewidth=2)
        if pool in reserved:
            ax.axhline(reserved[pool], color="tab:gray", linestyle=":", label="reserved")
        ax.set_title(pool, loc="left", fontsize="medium")
        ax.set_ylabel("nodes")
        ax.set_ylim(bottom=0, top=max([reserved.get(pool, 0), *(max(s.nodes) for s in series if s.pool == pool)]) + 1)
        ax.legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("hours before now")
    axes[-1].set_xlim((since - now) / 3600, 0.0)
    fig.suptitle(f"capacity per pool and consumer, the last {(now - since) / 3600:g} h"
                 + (f"\nfrom {source}" if source else ""))
    save(fig, path)
    return fig

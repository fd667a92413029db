"""Pictures an operator looks at, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function builds and saves one figure and returns it, so a test can read its axes, series and
labels rather than its pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpufleet.infra.errors import BadInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gpufleet.automation.rebalance.history import MoveDetail

FORMATS = (".png", ".svg", ".pdf")


def _save(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if path.suffix.lower() not in FORMATS:
        raise BadInputError(f"--chart {path}: expected a file ending in {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise BadInputError(f"--chart {path}: no directory {path.parent}")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


def move_timeline(detail: MoveDetail, path: Path) -> Figure:
    """A Gantt of the move's states: one bar per state, from when it was entered, as long as it lasted."""
    from matplotlib.figure import Figure

    spans = detail.timeline
    fig = Figure(figsize=(8, 1.4 + 0.35 * max(len(spans), 1)), layout="constrained")
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
    _save(fig, path)
    return fig

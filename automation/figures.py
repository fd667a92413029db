"""The one way gpufleet makes a picture: matplotlib Figures on the Agg canvas, no pyplot state.

Figures are plain objects (``matplotlib.figure.Figure``), so nothing global is switched, a test can
read their axes, series and labels, and nothing needs a display. matplotlib is imported only when a
chart is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpufleet.infra.errors import BadInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = (".png", ".svg", ".pdf")
"""What ``--chart FILE`` may end in (formats the Agg canvas writes without extra libraries)."""


def check_path(path: Path) -> None:
    """Refuse a --chart path that cannot be written, before the command does any work."""
    if path.suffix.lower() not in FORMATS:
        raise BadInputError(f"--chart {path}: expected a file ending in {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise BadInputError(f"--chart {path}: no directory {path.parent}")


def new(**kwargs: Any) -> Figure:
    """An empty Figure attached to an Agg canvas (``figsize``, ``layout``, ... as matplotlib takes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, *, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (format from the suffix), after checking the path."""
    check_path(path)
    fig.savefig(path, dpi=dpi)

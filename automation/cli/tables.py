"""Tables in the style of kubectl: no borders, upper-case headers, cells folded, never cut.

Every command builds its tables here, so one rule holds everywhere: an identifier (a pool, a node
group, an instance id, an account) is never shortened with an ellipsis. A cell too wide for the
terminal folds onto the next line; columns an operator can derive (the Auto Scaling group's name,
the reservation id) are shown only with ``-o wide``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table


class OutputFormat(StrEnum):
    """How much a table shows: ``table`` (compact, fits 80 columns) or ``wide`` (every column)."""

    table = "table"
    wide = "wide"


Output = Annotated[OutputFormat, typer.Option("--output", "-o", metavar="table|wide",
                                              help="wide: also the derivable columns (ASG names, reservation ids).")]


def table(*columns: str, title: str | None = None, whole: tuple[str, ...] = ()) -> Table:
    """A compact table whose every column folds rather than cuts (and at least as wide as its title,
    which would otherwise wrap to the table's width); the ``whole`` columns (identifiers) are the
    last to give up width."""
    t = Table(box=None, pad_edge=False, show_edge=False, title=title, title_justify="left",
              title_style="bold", header_style="bold", min_width=len(title) if title else None)
    for name in columns:
        t.add_column(name.upper(), overflow="fold", no_wrap=name in whole)
    return t

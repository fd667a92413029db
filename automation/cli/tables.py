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
from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    """How much a table shows: ``table`` (compact, fits 80 columns) or ``wide`` (every column)."""

    table = "table"
    wide = "wide"


Output = Annotated[OutputFormat, typer.Option("--output", "-o", metavar="table|wide",
                                              help="wide: also the derivable columns (ASG names, reservation ids, AZ IDs).")]


def table(*columns: str, title: str | None = None, whole: tuple[str, ...] = ()) -> Table:
    """A compact table whose every column folds rather than cuts (and at least as wide as its title,
    which would otherwise wrap to the table's width); the ``whole`` columns (identifiers) are the
    last to give up width."""
    t = Table(box=None, pad_edge=False, show_edge=False, title=title, title_justify="left",
              title_style="bold", header_style="bold", min_width=len(title) if title else None)
    for name in columns:
        t.add_column(name.upper(), overflow="fold", no_wrap=name in whole)
    return t


def print_table(console: Console, t: Table, *, wide: bool = False) -> None:
    """``wide`` (``-o wide``): the table at its natural width, past the terminal's if need be, as
    kubectl prints it, so that no cell folds; otherwise folded to the terminal."""
    if not wide:
        console.print(t)
        return
    # print(width=) only narrows; widen the console for this table alone (output.py keeps
    # ``_width`` None so that the terminal is measured at each print).
    saved = console._width
    natural = console.measure(t, options=console.options.update(max_width=10_000)).maximum
    console.width = max(console.width, natural)
    try:
        console.print(t, crop=False)
    finally:
        console._width = saved

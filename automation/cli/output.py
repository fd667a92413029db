"""Rendering shared by every command: JSON on stdout, human text via rich, errors on stderr."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from gpufleet.infra.errors import GpufleetError


def _console(**options: Any) -> Console:
    made = Console(**options)
    # Rich reads COLUMNS once, when a console is made; these are made at import, and one process
    # may run several commands (the demo, tests through CliRunner), each under its own COLUMNS:
    # measure the terminal at each print instead.
    made._width = None
    return made


console = _console()
err_console = _console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _Warnings(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(Text.assemble(("warning: ", "yellow"), record.getMessage()), highlight=False)


def route_warnings() -> None:
    """Warnings logged on the root logger (the Pulumi runtime's, rendering under its mocks) go to
    stderr as ``warning:`` lines folded to the terminal's width, not as logging's bare last-resort
    line."""
    root = logging.getLogger()
    if not any(isinstance(h, _Warnings) for h in root.handlers):
        root.addHandler(_Warnings(logging.WARNING))


def say(text: str, *, label: str = "", style: str = "", fold: bool = True) -> None:
    """One message on stderr: ``label`` in ``style``, then ``text`` as it is (never read as markup),
    folded at spaces to the terminal's width; ``fold=False`` keeps it on one line (a path to copy)."""
    message = Text.assemble((label, style), text) if label else Text(text)
    err_console.print(message, highlight=False, soft_wrap=not fold)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (or objects with ``to_dict``), enums and paths, recursively."""
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    return obj


SCHEMA_VERSION = 2
"""Of the JSON that plan, status, rebalance and health print (docs/json.md); raised when a key changes
meaning or goes away, not when one is added."""


def print_json(obj: Any, *, versioned: bool = False) -> None:
    """``versioned``: a command's result document, which leads with ``schema_version``."""
    doc = to_jsonable(obj)
    if versioned and isinstance(doc, dict):
        doc = {"schema_version": SCHEMA_VERSION, **doc}
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(error: GpufleetError, json_mode: bool = False) -> typer.Exit:
    """Print the error (stderr; also as JSON on stdout in --json mode) and return the Exit to raise."""
    if json_mode:
        print_json({"error": error.to_dict()})
    # Messages quote values (``[secret]``, ``s3://<bucket>[/<prefix>]``): never read them as markup.
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, soft_wrap=True)
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}", highlight=False, soft_wrap=True)
    return typer.Exit(error.code)


def handle_errors(func: F) -> F:
    """Turn GpufleetError into its exit code and a message; never a traceback.

    A command taking a ``json_output`` keyword gets the error as JSON on stdout too.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GpufleetError as error:
            raise fail(error, bool(kwargs.get("json_output"))) from None

    return wrapper  # type: ignore[return-value]

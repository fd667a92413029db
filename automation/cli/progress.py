"""Progress of a long operation: a live line on a terminal, periodic plain lines elsewhere.

Each step is a line with its UTC time, state, pool, counts and the time since the command began,
within the terminal's width (the whole detail is in --json, the journal and `rebalance show`);
while a step polls (nodes draining, instances booting, nodes joining) a terminal shows one line
that updates in place ("1/2 InService in inference, 2m10s of 15m"), and a pipe or a log gets the
same line every ``plain_every_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.text import Text

from gpufleet.automation.rebalance.engine import Progress


def duration(seconds: float | None) -> str:
    """``4.2s``, ``2m10s``, ``1h05m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def wait_line(p: Progress) -> str:
    """``1/2 InService in inference, 2m10s of 15m`` (the event's ``brief``), else
    ``waiting for 2 new InService instance(s) in inference/x: 1/2, 2m10s of 15m``."""
    w = p.waiting
    assert w is not None
    times = f"{duration(w.elapsed_s)} of {duration(w.timeout_s)}"
    counted = w.done is not None and w.total is not None
    if w.brief:
        return f"{w.done}/{w.total} {w.brief}, {times}" if counted else f"{w.brief}, {times}"
    count = f"{w.done}/{w.total}, " if counted else ""
    return f"waiting for {w.what}: {count}{times}"


STATE_WIDTH = 13
"""CHECKPOINTING, the longest state."""


def step_line(p: Progress, elapsed_s: float | None, width: int) -> list[Text]:
    """``10:00:04 ACQUIRED      h100-use1-az4 2 InService in inference (desired 4)  +1.2s``.

    The time, the state, then the pool and the step in few words (the event's ``brief``; its
    ``message``, with every identifier, goes to --json, and the journal has the rest), then the
    time since the command began (a wait line has its own). A line wider than ``width`` folds at
    spaces under the step; when a word (an identifier) is wider than that column, over the whole
    width: never cut, never past ``width`` unless one word is."""
    head = Text(f"{p.at[11:19]} ", style="dim")
    head.append(f"{p.state:<{STATE_WIDTH}} ", style="bold")
    body = Text(f"{p.pool} " if p.pool else "")
    body.append(wait_line(p) if p.waiting is not None else (p.brief or p.message))
    if elapsed_s is not None and p.waiting is None:
        body.append(f"  +{duration(elapsed_s)}", style="dim")
    if len(head) + len(body) <= width:
        return [head + body]
    column = width - len(head)
    if max(len(word) for word in body.plain.split()) <= column:
        lines = list(body.wrap(_measure, column, overflow="fold"))
        indent = Text(" " * len(head))
        return [head + lines[0], *(indent + line for line in lines[1:])]
    return list((head + body).wrap(_measure, width, overflow="fold"))


_measure = Console(width=10_000, color_system=None)
"""Text.wrap needs a console only to measure characters."""


class ProgressView:
    """The callback a command hands the core; ``close()`` when the operation returns."""

    def __init__(self, console: Console, *, live: bool | None = None, plain_every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.plain_every_s = plain_every_s
        self.clock = clock
        self.current: str | None = None
        """The operation the last event was about (for the Ctrl-C hint)."""
        self._status: Status | None = None
        self._last_plain: float | None = None
        self._started: float | None = None
        """When the first event came (the lines' elapsed time counts from it)."""

    def _elapsed(self) -> float | None:
        now = self.clock()
        if self._started is None:
            self._started = now
            return None
        return now - self._started

    def __call__(self, p: Progress) -> None:
        self.current = p.op_id
        if p.waiting is not None:
            self._waiting(p)
            return
        self.close()  # the wait (if any) is over
        self._last_plain = None  # a new step: its first wait line shows at once
        self._print(step_line(p, self._elapsed(), self.console.width))

    def _waiting(self, p: Progress) -> None:
        if self.live:
            line = escape(f"{p.state} {p.pool} {wait_line(p)}" if p.pool else f"{p.state} {wait_line(p)}")
            if self._status is None:
                self._status = self.console.status(line)
                self._status.start()
            else:
                self._status.update(line)
            return
        now = self.clock()
        if self._last_plain is None or now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            self._print(step_line(p, self._elapsed(), self.console.width))

    def _print(self, lines: list[Text]) -> None:
        for line in lines:
            line.rstrip()
            self.console.print(line, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

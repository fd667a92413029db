"""Progress of a long operation: a live line on a terminal, periodic plain lines elsewhere.

Each step is a line with its UTC time; while a step polls (nodes draining, instances booting, nodes
joining) a terminal shows one line that updates in place ("1/2, 2m10s of 15m"), and a pipe or a
log gets the same line every ``plain_every_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.status import Status

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
    """``waiting for 2 new InService instance(s) in inference/x: 1/2, 2m10s of 15m``."""
    w = p.waiting
    assert w is not None
    count = f"{w.done}/{w.total}, " if w.done is not None and w.total is not None else ""
    return f"waiting for {w.what}: {count}{duration(w.elapsed_s)} of {duration(w.timeout_s)}"


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

    def __call__(self, p: Progress) -> None:
        self.current = p.op_id
        if p.waiting is not None:
            self._waiting(f"{p.state:<13} {wait_line(p)}")
            return
        self.close()  # the wait (if any) is over
        self._last_plain = None  # a new step: its first wait line shows at once
        self.console.print(f"[dim]{p.at[11:19]}[/] [bold]{p.state:<13}[/] {escape(p.message)}  [dim]{p.op_id}[/]",
                           highlight=False, soft_wrap=True)

    def _waiting(self, line: str) -> None:
        if self.live:
            if self._status is None:
                self._status = self.console.status(line)
                self._status.start()
            else:
                self._status.update(line)
            return
        now = self.clock()
        if self._last_plain is None or now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            self.console.print(line, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

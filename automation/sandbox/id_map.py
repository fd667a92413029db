"""Rendered (mock) ids and ARNs -> the ids and ARNs the emulator really gave.

The offline render answers every computed value with a deterministic stand-in (``vpc-<hash>``,
``cr-<hash>``, an ARN with a made-up uuid). Applying a resource records what the emulator made of
it; ``substitute`` then rewrites any value that mentions a rendered id (inputs of dependents, policy
documents, the exports) with the real one. Ids are long random-looking strings, so a substring
replacement never hits anything else; longer ids are tried first, so an ARN wins over the id inside it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any


class IdMap:
    """Rendered value -> emulated value, applied everywhere a rendered value appears (thread-safe:
    stacks deployed side by side share one map)."""

    def __init__(self) -> None:
        self._real: dict[str, str] = {}
        self._pattern: tuple[re.Pattern[str], dict[str, str]] | None = None
        """The compiled alternation of every rendered id, with the map it was built from."""
        self._lock = threading.Lock()

    def add(self, rendered: object, real: object) -> None:
        """Record one pair; equal or empty values change nothing."""
        if not isinstance(rendered, str) or not isinstance(real, str) or not rendered or rendered == real:
            return
        with self._lock:
            known = self._real.get(rendered)
            if known is not None and known != real:
                raise ValueError(f"rendered id {rendered} was applied twice: {known} and {real}")
            self._real[rendered] = real
            self._pattern = None

    def substitute(self, value: Any) -> Any:
        """``value`` with every rendered id replaced, through mappings and lists."""
        if isinstance(value, str):
            with self._lock:
                if not self._real:
                    return value
                if self._pattern is None:
                    ordered = sorted(self._real, key=len, reverse=True)
                    self._pattern = (re.compile("|".join(re.escape(k) for k in ordered)), dict(self._real))
                pattern, real = self._pattern
            return pattern.sub(lambda m: real[m.group(0)], value)
        if isinstance(value, Mapping):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.substitute(v) for v in value]
        return value

    def items(self) -> Iterator[tuple[str, str]]:
        with self._lock:
            return iter(sorted(self._real.items()))

    def __len__(self) -> int:
        return len(self._real)

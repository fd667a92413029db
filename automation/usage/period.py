"""``--since 7d`` / ``--until 2026-12-01T06:00Z``: a report's period as epoch seconds."""

from __future__ import annotations

import datetime
import re

from gpufleet.infra.errors import BadInputError

RELATIVE = re.compile(r"^(\d+)([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(option: str, value: str, now: float) -> float:
    """A relative age (``90m``, ``7d``: that long before ``now``), ``now``, or an ISO 8601 time (UTC if no zone)."""
    text = value.strip()
    if text == "now":
        return now
    if m := RELATIVE.match(text):
        return now - int(m.group(1)) * UNIT_S[m.group(2)]
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"{option} {value!r} is not a time",
                            "give an age (30m, 12h, 7d, 2w), 'now', or ISO 8601 (2026-12-01T06:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def parse_period(since: str, until: str, now: float) -> tuple[float, float]:
    """``[start, end)`` with ``end`` no later than ``now`` (nothing is known of the future): a period
    wholly ahead of ``now`` is empty (start == end), which the report says, exit 0."""
    start, end = parse_time("--since", since, now), parse_time("--until", until, now)
    if end <= start:
        raise BadInputError(f"--since {since!r} is not before --until {until!r}")
    end = min(end, now)
    return min(start, end), end

"""The healer's decision table (``decisions.csv`` beside this module): per signal, the action.

The node side reports (lifecycle/health: Xid codes, ECC, NVLink, drain reasons); the control plane
decides here. Each Xid row carries NVIDIA's recommended immediate action from its Xid catalog and
the catalog's URL; the table maps it onto what the healer can do to a cloud instance: ``leave``
(application faults), ``reboot`` (a GPU reset or a machine restart clears it) or ``replace``
(worn-out hardware, a fault that outlived its reboot, an impaired host, an operator's request).
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gpufleet.infra.errors import ConfigError

TABLE = Path(__file__).with_name("decisions.csv")
COLUMNS = ("signal", "action", "after_minutes", "nvidia_immediate_action", "source", "checked", "why")
NAMED_SIGNALS = frozenset({"ecc_double_bit", "row_remap_failure", "nvlink_error", "health_check_failed",
                           "not_ready", "reboot_failed", "ec2_status_failed", "replace_requested",
                           "gate_failed"})
"""Signals besides ``xid:<code>``: the observers (``observe.py``) produce exactly these."""


class HealAction(enum.StrEnum):
    """What the healer does to a node, least drastic first."""

    LEAVE = "leave"
    REBOOT = "reboot"
    REPLACE = "replace"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One row of the table."""

    signal: str
    """``xid:<code>`` or one of NAMED_SIGNALS."""
    action: HealAction
    """What the healer does when it sees the signal."""
    after_minutes: float | None
    """Only for a lasting condition (``not_ready``): how long it must last first."""
    nvidia_action: str
    """NVIDIA's Xid catalog 'Resolution Bucket (Immediate Action)', where the row cites it."""
    source: str
    """The URL the row is taken from, or ``gpufleet`` for the healer's own policy."""
    checked: str = ""
    """For an Xid row, what its NVIDIA action was checked against (the catalog page, or NVIDIA's
    own mapping of it where the stored copy of the page did not show the row)."""
    why: str
    """One line: what the fault is and why this action."""


@dataclass(frozen=True, kw_only=True)
class DecisionTable:
    """Signal -> decision; unknown Xid codes are left (the node's health check still drains on them)."""

    rows: dict[str, Decision]
    """By signal."""

    def lookup(self, signal: str) -> Decision:
        if signal in self.rows:
            return self.rows[signal]
        if signal.startswith("xid:"):
            return Decision(signal=signal, action=HealAction.LEAVE, after_minutes=None, nvidia_action="",
                            source="gpufleet", why=f"{signal} is not in the decision table: watched, not acted on")
        raise KeyError(signal)

    def xids(self) -> dict[int, Decision]:
        return {int(s.split(":", 1)[1]): d for s, d in self.rows.items() if s.startswith("xid:")}


def parse_table(path: Path) -> DecisionTable:
    """Read and validate one table: an error names the file and line, the column and the value."""
    rows: dict[str, Decision] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ConfigError(str(path), "header", reader.fieldnames, f"expected {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            decision = _row(f"{path}:{line}", row)
            if decision.signal in rows:
                raise ConfigError(f"{path}:{line}", "signal", decision.signal, "appears twice")
            rows[decision.signal] = decision
    missing = NAMED_SIGNALS - rows.keys()
    if missing:
        raise ConfigError(str(path), "signal", sorted(missing), "no row for these signals")
    return DecisionTable(rows=rows)


def _row(where: str, row: dict[str, str]) -> Decision:
    signal = row["signal"].strip()
    if signal.startswith("xid:"):
        if not signal[4:].isdigit():
            raise ConfigError(where, "signal", signal, "an Xid signal is xid:<code>")
    elif signal not in NAMED_SIGNALS:
        raise ConfigError(where, "signal", signal, "unknown signal",
                          f"xid:<code> or one of {', '.join(sorted(NAMED_SIGNALS))}")
    try:
        action = HealAction(row["action"].strip())
    except ValueError:
        raise ConfigError(where, "action", row["action"], "unknown action",
                          f"one of {', '.join(a.value for a in HealAction)}") from None
    after = row["after_minutes"].strip()
    if signal == "not_ready" and not after:
        raise ConfigError(where, "after_minutes", after, "not_ready needs how long it must last")
    try:
        minutes = float(after) if after else None
    except ValueError:
        raise ConfigError(where, "after_minutes", after, "not a number") from None
    if minutes is not None and minutes <= 0:
        raise ConfigError(where, "after_minutes", after, "must be positive")
    source, nvidia = row["source"].strip(), row["nvidia_immediate_action"].strip()
    if signal.startswith("xid:") and not (source.startswith("https://docs.nvidia.com/") and nvidia):
        raise ConfigError(where, "source", source, f"{signal} must cite NVIDIA's Xid catalog (URL and immediate action)")
    checked = (row["checked"] or "").strip()
    if signal.startswith("xid:") and not checked:
        raise ConfigError(where, "checked", checked, f"{signal} must say what its NVIDIA action was checked against")
    return Decision(signal=signal, action=action, after_minutes=minutes, nvidia_action=nvidia, source=source,
                    checked=checked, why=row["why"].strip())


@cache
def default_table() -> DecisionTable:
    return parse_table(TABLE)

"""What the healer sees on Slurm: node states and drain reasons, turned into decision-table signals.

The node's health hook drains with ``gpufleet: <check>: <detail>`` (lifecycle/health/actions.py);
an operator asks for a replacement with the reason ``gpufleet replace``; the healer drains a newcomer
that failed its gate with ``gpufleet gate failed`` (replaced in turn); the gate holds a new node
with ``gpufleet unverified`` (the gate's business, not the healer's). Other reasons are an
operator's own drain and are left alone. A node DOWN or NOT_RESPONDING is ``not_ready`` since the
time Slurm stamped on its reason.
"""

from __future__ import annotations

import re
from datetime import datetime

from gpufleet.automation.orchestrators.base import UNVERIFIED_REASON
from gpufleet.automation.slurm_client import SlurmNode

REQUEST_REASON = "gpufleet replace"
GATE_FAILED_REASON = "gpufleet gate failed"
"""The healer drains a newcomer that failed its gate with this reason (then the operation's id and
the gate's summary): the next pass replaces it (``gate_failed``)."""
HOOK_PREFIX = "gpufleet:"
XID = re.compile(r"\bXid (\d+)\b")
STAMP = re.compile(r"\[[^@\]]*@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\]")
NOT_READY = ("DOWN", "NOT_RESPONDING", "FAIL")
REBOOTING = ("REBOOT",)


def reason_signals(reason: str) -> tuple[str, ...]:
    """Decision-table signals in one Slurm drain reason."""
    text = STAMP.sub("", reason).strip()
    if text.lower().startswith(REQUEST_REASON):
        return ("replace_requested",)
    if text.startswith(GATE_FAILED_REASON):
        return ("gate_failed",)
    if text.startswith(UNVERIFIED_REASON) or not text.startswith(HOOK_PREFIX):
        return ()
    check, _, detail = text[len(HOOK_PREFIX):].strip().partition(":")
    check = check.strip()
    if check == "xid":
        codes = XID.findall(detail)
        return tuple(dict.fromkeys(f"xid:{c}" for c in codes)) or ("health_check_failed",)
    if check == "ecc":
        if "row remapping failed" in detail:
            return ("row_remap_failure",)
        return ("ecc_double_bit",) if "double-bit" in detail else ("health_check_failed",)
    if "nvlink" in check:
        return ("nvlink_error",)
    return ("health_check_failed",)


def not_ready_for(node: SlurmNode, now: float) -> float | None:
    """Seconds the node has been unreachable (from its reason's stamp), None when it answers."""
    flags = set(re.split(r"[+*~#!%$@^-]", node.state.upper()))
    if not flags & set(NOT_READY):
        return None
    stamp = STAMP.search(node.reason)
    if stamp is None:
        return 0.0
    # Slurm stamps the head node's local time, as a naive datetime reads it.
    at = datetime.fromisoformat(stamp.group(1)).timestamp()
    return max(0.0, now - at)


def rebooting(node: SlurmNode) -> bool:
    return any(flag in node.state.upper() for flag in REBOOTING)

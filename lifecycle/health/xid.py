"""Xid events from the kernel log (``NVRM: Xid (PCI:0000:b9:00): 79, ...``) and what each one means.

Severity follows NVIDIA's Xid catalog: application faults (13, 31, 43, 45) say nothing about the
hardware; fallen-off-the-bus, uncontained memory errors, NVLink and GSP failures need a reboot or a
replacement.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from gpufleet.lifecycle.health.results import Action, Status

# dmesg -T prefixes "[Tue Mar 19 03:47:15 2024] ", journalctl -k "Mar 19 03:47:15 host kernel: ".
XID_LINE = re.compile(r"NVRM: Xid \(PCI:(?P<bus>[0-9a-fA-F:.]+)\): (?P<code>\d+),\s*(?P<rest>.*)")


@dataclass(frozen=True, kw_only=True)
class XidEvent:
    bus_id: str
    """PCI address as the driver prints it (``0000:b9:00``)."""
    code: int
    message: str


@dataclass(frozen=True, kw_only=True)
class XidMeaning:
    status: Status
    action: Action
    summary: str


# Codes not listed here are reported as WARN / MONITOR with their number.
XID_CATALOG: dict[int, XidMeaning] = {
    13: XidMeaning(status=Status.PASS, action=Action.NONE, summary="graphics engine exception (application)"),
    31: XidMeaning(status=Status.PASS, action=Action.NONE, summary="GPU memory page fault (application)"),
    43: XidMeaning(status=Status.PASS, action=Action.NONE, summary="GPU stopped processing (application)"),
    45: XidMeaning(status=Status.PASS, action=Action.NONE, summary="preemptive cleanup (application)"),
    48: XidMeaning(status=Status.FAIL, action=Action.RESET, summary="double-bit ECC error"),
    61: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="internal micro-controller breakpoint"),
    62: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="internal micro-controller halt"),
    63: XidMeaning(status=Status.WARN, action=Action.RESET, summary="row remapping pending (ECC page retirement)"),
    64: XidMeaning(status=Status.FAIL, action=Action.ISOLATE, summary="row remapping failure"),
    74: XidMeaning(status=Status.FAIL, action=Action.ISOLATE, summary="NVLink error"),
    79: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="GPU has fallen off the bus"),
    92: XidMeaning(status=Status.WARN, action=Action.MONITOR, summary="high single-bit ECC error rate"),
    94: XidMeaning(status=Status.FAIL, action=Action.RESET, summary="contained ECC error"),
    95: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="uncontained ECC error"),
    119: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="GSP RPC timeout"),
    120: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="GSP error"),
    154: XidMeaning(status=Status.FAIL, action=Action.REBOOT, summary="GPU recovery action required"),
}


def meaning(code: int) -> XidMeaning:
    return XID_CATALOG.get(code, XidMeaning(status=Status.WARN, action=Action.MONITOR, summary=f"Xid {code}"))


def parse_xid_events(kernel_log: str) -> list[XidEvent]:
    """Every Xid line of a ``dmesg`` / ``journalctl -k`` text, in order."""
    events = []
    for line in kernel_log.splitlines():
        match = XID_LINE.search(line)
        if match:
            events.append(XidEvent(bus_id=match["bus"].lower(), code=int(match["code"]), message=match["rest"].strip()))
    return events


def count_by_code(events: list[XidEvent]) -> Counter[int]:
    return Counter(e.code for e in events)

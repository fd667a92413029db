"""Parser of ``fi_info -p efa``: the EFA devices libfabric sees.

Each device appears once per endpoint type (``rdmap79s0-rdm`` and ``rdmap79s0-dgrm``); a device is
counted once.
"""

from __future__ import annotations

import re

COMMAND = ("fi_info", "-p", "efa")
_DOMAIN = re.compile(r"^\s*domain:\s*(\S+)", re.MULTILINE)
_PROVIDER = re.compile(r"^provider:\s*efa\b", re.MULTILINE)


def efa_devices(fi_info_output: str) -> list[str]:
    """Sorted device names (``rdmap79s0``) of the efa provider; [] when there is none."""
    if not _PROVIDER.search(fi_info_output):
        return []
    devices = {re.sub(r"-(rdm|dgrm)$", "", d) for d in _DOMAIN.findall(fi_info_output)}
    return sorted(devices)

"""Golden files (tests/golden/): rendered scripts, configs and manifests compared to the letter, so a
change to what the code renders shows up in review as a diff of the file.

After an intended change, regenerate and read the diff: ``GPUFLEET_UPDATE_GOLDEN=1 pytest <tests>``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = "GPUFLEET_UPDATE_GOLDEN"
MAX_DIFF_LINES = 60


def check_golden(name: str, text: str) -> None:
    """``text`` must equal tests/golden/<name>; with GPUFLEET_UPDATE_GOLDEN=1 it becomes the file."""
    path = GOLDEN / name
    if os.environ.get(UPDATE) == "1" and (not path.exists() or path.read_text() != text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with {UPDATE}=1 to create it"
    expected = path.read_text()
    if text != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), text.splitlines(), f"golden/{name}", "rendered",
                                         lineterm=""))
        shown = "\n".join(diff[:MAX_DIFF_LINES]) + (f"\n... {len(diff) - MAX_DIFF_LINES} more lines"
                                                    if len(diff) > MAX_DIFF_LINES else "")
        raise AssertionError(f"{name} changed; review the diff, regenerate with {UPDATE}=1:\n{shown}")

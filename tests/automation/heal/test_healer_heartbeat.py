"""``--heartbeat``: the healer entry point touches the file before each pass (and at each step
and pass end), so the Deployment's liveness probe sees a live process even when a pass fails."""

from __future__ import annotations

import subprocess
import sys
import time


def test_each_pass_touches_the_heartbeat_even_one_that_fails(tmp_path):
    beat = tmp_path / "heartbeat"
    missing = tmp_path / "inventory.json"
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation.heal", "--inventory", str(missing),
                           "--orchestrator", "eks", "--heartbeat", str(beat)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and str(missing) in done.stderr, done.stderr
    assert beat.is_file() and time.time() - beat.stat().st_mtime < 120


def test_without_the_option_no_file_is_written(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation.heal", "--inventory",
                           str(tmp_path / "inventory.json")], capture_output=True, text=True, timeout=120,
                          check=False, cwd=tmp_path)
    assert done.returncode == 2 and sorted(p.name for p in tmp_path.iterdir()) == []

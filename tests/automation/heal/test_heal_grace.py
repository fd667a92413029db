"""The grace between the healer's checkpoint signal and its requeue: from the operator's setting,
else from the checkpoint time the jobs publish, else torchrun's own bound."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpufleet.automation.heal.grace import DEFAULT_S, FACTOR, MARGIN_S, MAX_S, MIN_S, grace_s
from gpufleet.automation.slurm_client import QueuedJob
from tests.conftest import REPO


def job(comment: str) -> QueuedJob:
    return QueuedJob(job_id="7", name="gpt", state="RUNNING", elapsed="1:00", nodes="node1", comment=comment)


@pytest.mark.parametrize(("comments", "configured", "expected"), [
    ((), None, DEFAULT_S),
    (("",), None, DEFAULT_S),
    (("checkpoint=1764619200",), None, DEFAULT_S),  # when, not how long: no save time published
    (("checkpoint=1764619200 checkpoint_s=2.00",), None, FACTOR * 2.0 + MARGIN_S),
    (("checkpoint_s=1.5", "checkpoint_s=4"), None, FACTOR * 4.0 + MARGIN_S),  # the slowest job's
    (("checkpoint_s=0.01",), None, MIN_S),
    (("checkpoint_s=900",), None, MAX_S),
    (("checkpoint_s=2",), 0.0, 0.0),  # the operator's setting wins, 0 included
    ((), 45.0, 45.0),
])
def test_grace(comments, configured, expected):
    assert grace_s([job(c) for c in comments], configured) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["-1", "3601"])
@pytest.mark.parametrize("entry", [["-m", "gpufleet.automation.heal"], ["-m", "gpufleet.automation", "heal"]],
                         ids=["head", "cli"])
def test_both_entry_points_refuse_a_grace_out_of_bounds(entry, value, tmp_path):
    done = subprocess.run([sys.executable, *entry, "--inventory", str(tmp_path / "none.json"),
                           "--checkpoint-grace", value], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert f"--checkpoint-grace {value}: expected 0 to 3600 seconds" in done.stderr

"""The grace on the real local Slurm: a job that checkpoints and requeues itself on the signal
leaves within it and the healer requeues nothing (test_heal_slurm.py's replacement); a job that
only logs the signal is requeued by the healer once its grace is over, not before."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.automation.heal.decisions import HealAction
from tests.automation.heal.test_heal_slurm import TOLD_JOB, decision, fleet  # noqa: F401 - the fixture

pytestmark = pytest.mark.slurm

GRACE_S = 3.0


def test_a_job_that_stays_is_requeued_once_its_grace_is_over(fleet):  # noqa: F811 - the fixture
    job = fleet.harness.sbatch(TOLD_JOB, "-N", "1", "-w", "node1", "--requeue")
    fleet.harness.wait_until(lambda: fleet.harness.job(job).state == "RUNNING", timeout=30, what="job running")
    fleet.drain("node1", "gpufleet: ecc: GPU 0000:b9:00: row remapping failed (no spare rows)")
    report = fleet.heal(grace=GRACE_S)
    assert decision(report, "node1").action is HealAction.REPLACE
    (op,) = report.operations
    assert op["state"] == "DONE"
    events = fleet.journal.events(op["op_id"])
    told = next(e for e in events if e.event_type == "result" and e.step == "checkpoint")
    assert told.detail == {"signalled": [str(job)], "grace_s": GRACE_S}
    drained = next(e for e in events if e.event_type == "transition" and e.state == "DRAINED")
    assert drained.detail["requeued"] == [str(job)] and drained.detail["left_on_their_own"] == []
    # The requeue came after the grace: the job had its GRACE_S to save on the signal.
    assert (drained.at_ns - told.at_ns) / 1e9 >= GRACE_S
    stdout = fleet.slurm.job(str(job)).get("StdOut", "")
    assert "checkpoint at" in Path(stdout).read_text(), "the job got USR1"
    assert fleet.harness.job(job).restarts >= 1

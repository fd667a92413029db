"""Deep tier verdicts: DCGM diagnostics from recorded ``dcgmi diag -r 3 -j`` output, or a SKIP."""

from __future__ import annotations

import subprocess

from fixture_runner import FixtureRunner

from gpufleet.lifecycle.health.deep import check_dcgm
from gpufleet.lifecycle.health.results import Action, Status, Tier
from tests.conftest import REPO, require_binary


def test_dcgm_failure_isolates_the_named_gpu():
    (result,) = check_dcgm(FixtureRunner({"dcgmi": "dcgmi_diag_r3_fail.json"}), level=3)
    assert (result.status, result.action, result.device, result.tier) == (Status.FAIL, Action.ISOLATE, "gpu5", Tier.DEEP)
    assert result.detail.startswith("level 3 Hardware/GPU Memory GPU 5: Error using CUDA API cudaMemcpy")


def test_dcgm_pass_counts_the_tests_and_absence_is_a_skip():
    runner = FixtureRunner({"dcgmi": "dcgmi_diag_r3_pass.json"})
    (result,) = check_dcgm(runner, level=3)
    assert result.status is Status.PASS and "16 tests, none failed (DCGM 3.3.5)" in result.detail
    assert runner.calls == [("dcgmi", "diag", "-r", "3", "-j")]
    (skip,) = check_dcgm(FixtureRunner({}), level=4)
    assert skip.status is Status.SKIP and skip.detail == "dcgmi is not installed"


def test_unreadable_dcgm_output_is_not_a_pass():
    runner = FixtureRunner({"dcgmi": "dmesg_clean.txt"})
    (result,) = check_dcgm(runner)
    assert result.status is Status.FAIL


def test_slurm_hook_script_passes_shellcheck():
    shellcheck = require_binary("shellcheck")
    done = subprocess.run([shellcheck, str(REPO / "lifecycle" / "health" / "slurm_healthcheck.sh")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout

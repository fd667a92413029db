"""`gpufleet jobs logs` reads a Slurm job's own output only. Caught before: it printed whatever
path the job recorded as StdOut (``--output=/etc/shadow``), read with the caller's rights."""

from __future__ import annotations

import os

import pytest

from gpufleet.automation.jobs.slurm import own_output
from gpufleet.infra.errors import SlurmError


def record(workdir, stdout, **extra):
    """Fields of ``scontrol show job -o`` that the check reads."""
    return {"JobId": "42", "JobName": "demo", "WorkDir": str(workdir), "StdOut": str(stdout),
            "UserId": f"someone({os.getuid()})", **extra}


def test_the_output_gpufleet_renders_is_read(tmp_path):
    out = tmp_path / "demo-42.out"
    out.write_text("step 1\n")
    assert own_output("42", record(tmp_path, out)) == out


@pytest.mark.parametrize("stdout", ["/etc/shadow", "{w}/../other-42.out", "{w}/demo-43.out", "{w}/sub/demo-42.out"])
def test_any_other_recorded_path_is_refused(tmp_path, stdout):
    with pytest.raises(SlurmError, match="gpufleet reads only the output its own jobs write"):
        own_output("42", record(tmp_path, stdout.format(w=tmp_path)))


def test_a_link_out_of_the_working_directory_is_refused(tmp_path):
    (tmp_path / "demo-42.out").symlink_to("/etc/passwd")
    with pytest.raises(SlurmError, match="leads out of"):
        own_output("42", record(tmp_path, tmp_path / "demo-42.out"))


def test_a_file_of_another_user_is_refused(tmp_path):
    out = tmp_path / "demo-42.out"
    out.write_text("x\n")
    with pytest.raises(SlurmError, match="not owned by the job's user"):
        own_output("42", record(tmp_path, out, UserId=f"other({os.getuid() + 1})"))

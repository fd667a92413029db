"""The one Slurm client: its parsers on Slurm's real output shapes, its failures as SlurmError, and
``gpufleet jobs`` through it against a real local Slurm."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.slurm_client import (
    SlurmClient,
    parse_queue,
    parse_records,
    parse_show_node,
)
from gpufleet.infra.errors import SlurmError


def test_records_keep_values_with_spaces_and_keys_with_slashes():
    line = ("NodeName=node1 Arch=x86_64 CoresPerSocket=1 State=IDLE+DRAIN ThreadsPerCore=1 "
            "Reason=gpufleet unverified: gate pending [root@2025-06-05T10:00:00] Socks/Node=* "
            "Comment=instance-id=i-0abc12345678 Extra=(null)")
    [fields] = parse_records(line + "\n\n")
    assert fields["Reason"] == "gpufleet unverified: gate pending [root@2025-06-05T10:00:00]"
    assert fields["Socks/Node"] == "*" and fields["Comment"] == "instance-id=i-0abc12345678"
    [node] = parse_show_node(line)
    assert (node.name, node.state, set(node.instance_ids)) == ("node1", "IDLE+DRAIN", {"i-0abc12345678"})
    assert node.reason.startswith("gpufleet unverified")


def test_queue_lines_keep_a_comment_holding_the_separator():
    text = "17|train|RUNNING|1:02|node[1-2]|checkpoint=1700000000 | step 40\n18|eval|PENDING|0:00|(Priority)|(null)\n"
    jobs = parse_queue(text)
    assert [(j.job_id, j.state, j.nodes, j.comment) for j in jobs] == [
        ("17", "RUNNING", "node[1-2]", "checkpoint=1700000000 | step 40"), ("18", "PENDING", "(Priority)", "")]


def stand_in(tmp_path, name: str, body: str) -> dict[str, str]:
    """An executable named like a Slurm command, first on PATH (the process boundary)."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{tmp_path}:/usr/bin:/bin", "SLURM_CONF": str(tmp_path / "slurm.conf")}


def test_a_missing_command_is_a_slurm_error_with_a_hint(tmp_path):
    with pytest.raises(SlurmError) as info:
        SlurmClient(env={"PATH": str(tmp_path)}).nodes()
    assert "scontrol is not installed" in info.value.message and "slurm-client" in info.value.hint
    assert info.value.code == 6


def test_a_failing_command_names_itself_its_stderr_and_the_slurm_conf(tmp_path):
    env = stand_in(tmp_path, "squeue", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1")
    with pytest.raises(SlurmError) as info:
        SlurmClient(env=env).queue(node="node1", states=("RUNNING",))
    assert info.value.message.startswith("squeue -h -o %i|%j|%T|%M|%R|%k -w node1 -t RUNNING failed (1)")
    assert "Unable to contact slurm controller" in info.value.message
    assert env["SLURM_CONF"] in info.value.hint


def test_a_hung_command_times_out(tmp_path):
    env = stand_in(tmp_path, "sbatch", "exec sleep 30")
    with pytest.raises(SlurmError, match="timed out after 1 s"):
        SlurmClient(env=env, timeout_s=1).submit("#!/bin/sh\ntrue\n")


@pytest.mark.slurm
def test_jobs_submit_list_log_and_cancel_through_the_cli(local_slurm, tmp_path):
    slurm = SlurmClient(env=local_slurm.env)
    tmp_path.chmod(0o777)
    # The layout gpufleet renders (automation/jobs/sbatch.py): the output is <WorkDir>/<name>-<id>.out,
    # the only file `jobs logs` reads.
    job_id = slurm.submit(f"#!/bin/bash\n#SBATCH --job-name=demo\n#SBATCH --chdir={tmp_path}\n"
                          "#SBATCH --output=%x-%j.out\necho hello from $SLURM_JOB_ID\nsleep 60\n")
    local_slurm.wait_until(lambda: any(j.job_id == job_id and j.state == "RUNNING" for j in slurm.queue()),
                           timeout=30, what="demo running")
    assert slurm.job(job_id)["StdOut"] == f"{tmp_path}/demo-{job_id}.out"
    runner = CliRunner()
    env = {k: v for k, v in local_slurm.env.items() if k not in os.environ or os.environ[k] != v}
    listed = runner.invoke(app, ["jobs", "ls", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = [r for r in json.loads(listed.stdout) if r["job_id"] == job_id]
    assert (row["name"], row["state"], row["restarts"]) == ("demo", "RUNNING", 0)
    local_slurm.wait_until(lambda: (tmp_path / f"demo-{job_id}.out").exists(), timeout=30, what="output file")
    logs = runner.invoke(app, ["jobs", "logs", job_id], env=env)
    assert logs.exit_code == 0 and f"hello from {job_id}" in logs.stdout
    assert runner.invoke(app, ["jobs", "cancel", job_id], env=env).exit_code == 0
    local_slurm.wait_until(lambda: all(j.job_id != job_id for j in slurm.queue()), timeout=30, what="demo gone")

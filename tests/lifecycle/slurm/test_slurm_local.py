"""The rendered slurm.conf on a real slurmctld with several slurmd (tests/slurm_harness.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def _processes_named(prefix: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(prefix.encode()):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_rendered_conf_runs_partitions_and_gpu_jobs(local_slurm) -> None:
    slurm = local_slurm
    partitions = slurm.run("sinfo", "-h", "-o", "%P %D %t").stdout.split("\n")
    assert "train-h100* 3 idle" in partitions
    assert any(line.startswith("train-h200 0") for line in partitions)  # empty until nodes join
    assert "Gres=gpu:h100:8" in slurm.run("scontrol", "show", "node", "node1").stdout

    out = slurm.root / "jobs" / "gpu.out"
    job = slurm.sbatch("#!/bin/bash\necho \"$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES\"\n",
                       "-N", "2", "--gres=gpu:h100:8", "-o", str(out))
    slurm.wait_until(lambda: slurm.job(job).state == "COMPLETED", timeout=30, what=f"job {job} completed")
    assert out.read_text().split()[1] == "0,1,2,3,4,5,6,7"


def test_dynamic_node_joins_its_groups_partition_and_runs_a_job(local_slurm) -> None:
    slurm = local_slurm
    info = slurm.register_dynamic_node("train-h200-i-0abc", partition="train-h200")
    assert "DYNAMIC" in info.state and info.features == "train-h200"
    assert "Gres=gpu:h200:8" in slurm.run("scontrol", "show", "node", "train-h200-i-0abc").stdout

    out = slurm.root / "jobs" / "dyn.out"
    job = slurm.sbatch("#!/bin/bash\necho \"$SLURMD_NODENAME $(hostname)\"\n", "-p", "train-h200",
                       "--gres=gpu:h200:8", "-o", str(out))
    slurm.wait_until(lambda: slurm.job(job).state == "COMPLETED", timeout=30, what=f"job {job} completed")
    assert out.read_text().split() == ["train-h200-i-0abc", "train-h200-i-0abc"]

    # The ASG scaling in: the node goes away and is deleted from Slurm.
    slurm.crash_node("train-h200-i-0abc")
    slurm.run("scontrol", "delete", "nodename=train-h200-i-0abc")
    assert "train-h200-i-0abc" not in slurm.nodes()


def test_job_on_crashed_node_is_requeued_and_runs_elsewhere(local_slurm) -> None:
    slurm = local_slurm
    token = f"gpufleet-job-{uuid.uuid4().hex[:8]}"
    log = slurm.root / "jobs" / "requeue.log"
    script = f"""#!/bin/bash
echo "start $SLURMD_NODENAME restart=${{SLURM_RESTART_COUNT:-0}}" >> {log}
exec -a {token}-${{SLURM_RESTART_COUNT:-0}} sleep 300
"""
    job = slurm.sbatch(script, "-N", "1", "-o", "/dev/null")
    first = slurm.wait_until(lambda: (j := slurm.job(job)).state == "RUNNING" and j, timeout=30, what="job running")
    slurm.wait_until(lambda: _processes_named(f"{token}-0"), timeout=10, what="job process started")

    slurm.crash_node(first.nodes)
    assert not _processes_named(f"{token}-0"), "the crash must take the job's processes with it"

    again = slurm.wait_until(
        lambda: (j := slurm.job(job)).state == "RUNNING" and j.restarts >= 1 and j,
        timeout=60, what="job requeued and running again", interval=0.25)
    assert again.nodes != first.nodes
    slurm.wait_until(lambda: _processes_named(f"{token}-1"), timeout=10, what="requeued job process started")
    assert slurm.node(first.nodes).base_state == "DOWN"
    assert log.read_text().splitlines() == [f"start {first.nodes} restart=0", f"start {again.nodes} restart=1"]

    # ReturnToService=1: the node serves again once its slurmd is back.
    slurm.restart_node(first.nodes)
    assert slurm.node(first.nodes).base_state == "IDLE"
    slurm.run("scancel", str(job))

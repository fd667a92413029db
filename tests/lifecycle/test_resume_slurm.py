"""Proof (b): the reference job on a real local Slurm cluster survives the crash of its node.

``gpufleet launch`` submits the rendered sbatch script; once a checkpoint is committed the node
running the job is crashed (its slurmd's PID namespace killed, the job's processes with it); Slurm
requeues the job (``--requeue``), it starts on another node, resumes from the checkpoint and ends
with parameters bit-for-bit equal to an uninterrupted torchrun run with the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpufleet.automation.jobs.launch import launch
from gpufleet.automation.slurm_client import SlurmClient
from tests.conftest import REPO
from tests.lifecycle.job_log import job_events
from tests.lifecycle.torchrun_job import TORCHRUN, TorchrunJob, free_port

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slurm, pytest.mark.torch, pytest.mark.timeout(420)]

STEPS = 40
TRAIN_ARGS = ["--steps", str(STEPS), "--keep-last", "2", "--parallel", "ddp", "--seed", "7"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """Final parameters of an uninterrupted torchrun run with the same seed."""
    root = tmp_path_factory.mktemp("slurm-baseline")
    out = root / "baseline.pt"
    base = TorchrunJob(root, job_args=[*TRAIN_ARGS, "--ckpt-dir", str(root / "ckpt"), "--ckpt-every", "5",
                                       "--dump-final", str(out)])
    assert base.wait(180) == 0, base.tail()
    return out


def submit(slurm, tmp_path: Path) -> tuple[int, Path, Path]:
    """``gpufleet launch`` of the reference job on one node of the local cluster."""
    ckpt, final, progress = tmp_path / "ckpt", tmp_path / "final.pt", tmp_path / "progress"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({
        "name": "gpt-reference-local", "backend": "slurm", "partition": slurm.spec.partitions[0].name,
        "nodes": 1, "gpus_per_node": 0, "procs_per_node": 2, "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference",
        "args": [*TRAIN_ARGS, "--dump-final", str(final), "--progress-dir", str(progress), "--step-sleep", "0.1"],
        "checkpoint_dir": str(ckpt), "checkpoint_interval": 5, "max_restarts": 1, "rdzv_port": free_port(),
        "torchrun": str(TORCHRUN), "workdir": str(tmp_path),
        "env": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    }))
    result = launch(job_file, dry_run=False, slurm=SlurmClient(env=slurm.env))
    return int(result.job_id), ckpt, final


def assert_same_params(a_path: Path, b_path: Path) -> None:
    a, b = torch.load(a_path), torch.load(b_path)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == [], "parameters differ after the requeue"


def test_node_crash_requeues_and_resumes_bitwise(local_slurm, tmp_path, baseline):
    slurm = local_slurm
    job_id, ckpt, final = submit(slurm, tmp_path)
    first = slurm.wait_until(lambda: (j := slurm.job(job_id)).state == "RUNNING" and j, timeout=60,
                             what="job running")
    slurm.wait_until(lambda: (ckpt / "step_00000010").is_dir(), timeout=120, what="a checkpoint committed",
                     interval=0.05)
    slurm.crash_node(first.nodes)

    again = slurm.wait_until(lambda: (j := slurm.job(job_id)).restarts >= 1 and j.state == "RUNNING" and j,
                             timeout=90, what="job requeued and running again", interval=0.25)
    assert again.nodes != first.nodes
    done = slurm.wait_until(lambda: (j := slurm.job(job_id)).state in {"COMPLETED", "FAILED"} and j,
                            timeout=180, what="job finished", interval=0.5)
    log = tmp_path / f"gpt-reference-local-{job_id}.out"
    assert done.state == "COMPLETED", log.read_text(errors="replace")[-4000:]

    starts = [e for e in job_events(log) if e["event_type"] == "start"]
    assert len(starts) == 2, starts
    assert starts[0]["resumed_from"] is None and starts[1]["resumed_from"] >= 10
    assert_same_params(baseline, final)


def test_usr1_from_the_rebalancer_saves_requeues_and_resumes(local_slurm, tmp_path, baseline):
    """The rebalancer's ``scancel --signal=USR1 --full``: save now, requeue, resume, same result."""
    slurm = local_slurm
    job_id, ckpt, final = submit(slurm, tmp_path)
    slurm.wait_until(lambda: slurm.job(job_id).state == "RUNNING", timeout=60, what="job running")
    progress = tmp_path / "progress" / "rank0"
    slurm.wait_until(lambda: progress.exists() and int(progress.read_text().split()[1]) >= 7, timeout=120,
                     what="job past step 7", interval=0.05)
    slurm.run("scancel", "--signal=USR1", "--full", str(job_id))
    done = slurm.wait_until(lambda: (j := slurm.job(job_id)).state in {"COMPLETED", "FAILED"} and j,
                            timeout=240, what="job finished", interval=0.5)
    log = tmp_path / f"gpt-reference-local-{job_id}.out"
    text = log.read_text(errors="replace")
    assert done.state == "COMPLETED" and done.restarts >= 1, text[-4000:]
    stopping = [e for e in job_events(log) if e["event_type"] == "stopping"]
    assert len(stopping) == 1 and stopping[0]["slurm_requeued"] == str(job_id), text[-4000:]
    all_events = job_events(log)
    stop_at = all_events.index(stopping[0])
    starts = [e for e in all_events[stop_at:] if e["event_type"] == "start"]
    # The first start after the stop is the requeued job. A later start can follow when torchrun
    # restarts workers (seen: a rank aborting in gloo teardown after "finished"); it must resume
    # from a checkpoint at or past the stop, never from scratch.
    assert starts and starts[0]["resumed_from"] == stopping[0]["step"], "resumed from the checkpoint saved on USR1"
    assert all(e["resumed_from"] is not None and e["resumed_from"] >= stopping[0]["step"] for e in starts), text[-4000:]
    assert_same_params(baseline, final)


def test_jobs_ls_logs_cancel_on_real_slurm(local_slurm, tmp_path, monkeypatch):
    """``gpufleet jobs`` against the same cluster: the launched job is listed, its log read, cancelled."""
    from typer.testing import CliRunner

    from gpufleet.automation.cli.main import app

    slurm = local_slurm
    job_id, _, _ = submit(slurm, tmp_path)
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    slurm.wait_until(lambda: (tmp_path / "progress" / "rank0").exists(), timeout=120, what="job stepping")
    runner = CliRunner()
    listed = runner.invoke(app, ["jobs", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["job_id"]: r for r in json.loads(listed.stdout)}
    assert rows[str(job_id)]["name"] == "gpt-reference-local" and rows[str(job_id)]["state"] == "RUNNING"
    logs = runner.invoke(app, ["jobs", "logs", str(job_id), "--tail", "500"])
    assert logs.exit_code == 0 and '"event_type": "start"' in logs.stdout, logs.output
    assert runner.invoke(app, ["jobs", "cancel", str(job_id)]).exit_code == 0
    slurm.wait_until(lambda: slurm.job(job_id).state == "CANCELLED", timeout=30, what="job cancelled")
    missing = runner.invoke(app, ["jobs", "logs", "999999"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output

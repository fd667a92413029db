"""Proof (a): torchrun restarts killed workers and the run ends bit-for-bit where an
uninterrupted run ends; SIGTERM makes the job save and exit with the requeue code."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.lifecycle.torchrun_job import TORCHRUN, TorchrunJob

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.torch, pytest.mark.timeout(420)]

STEPS = 40
KILLS = 3


def job_args(ckpt: Path, parallel: str, *extra: str) -> list[str]:
    return ["--steps", str(STEPS), "--ckpt-dir", str(ckpt), "--ckpt-every", "5", "--keep-last", "2",
            "--parallel", parallel, "--seed", "7", *extra]


def assert_bitwise_equal(a_path: Path, b_path: Path) -> None:
    a, b = torch.load(a_path), torch.load(b_path)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"parameters differ after resume: {differ}"


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs, one per parallelism, computed on first use."""
    require(TORCHRUN.exists(), f"{TORCHRUN} missing (pip install torch into the venv)")
    root = tmp_path_factory.mktemp("baseline")
    cache: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, parallel: str) -> Path:
            out = root / f"{parallel}.pt"
            job = TorchrunJob(root / parallel, job_args=job_args(root / parallel / "ckpt", parallel,
                                                                 "--dump-final", str(out)))
            assert job.wait(180) == 0, job.tail()
            cache[parallel] = out
            return out

    return Lazy()


def committed(ckpt: Path) -> int | None:
    """Newest committed checkpoint step (commit is the rename to ``step_NNNNNNNN``)."""
    steps = [int(p.name[5:]) for p in ckpt.glob("step_*") if p.name[5:].isdigit()] if ckpt.exists() else []
    return max(steps, default=None)


def wait_committed(job: TorchrunJob, ckpt: Path, *, after: int | None, timeout: float) -> int:
    """Block until a checkpoint newer than ``after`` is committed (async saves commit a few steps late)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = committed(ckpt)
        if step is not None and (after is None or step > after):
            return step
        if job.proc.poll() is not None:
            raise AssertionError(f"torchrun exited {job.proc.returncode} early:\n{job.tail()}")
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint after {after} committed within {timeout}s:\n{job.tail()}")


@pytest.mark.parametrize(("parallel", "async_ckpt", "seed"), [("ddp", False, 1), ("fsdp", True, 2)])
def test_sigkill_workers_resume_bitwise(tmp_path, baselines, parallel, async_ckpt, seed):
    rng = random.Random(seed)
    kill_steps = sorted(rng.sample(range(3, STEPS - 3), KILLS))
    ckpt, final = tmp_path / "ckpt", tmp_path / "final.pt"
    extra = ["--dump-final", str(final), "--step-sleep", "0.05"] + (["--async-ckpt"] if async_ckpt else [])
    job = TorchrunJob(tmp_path, max_restarts=KILLS + 1, job_args=job_args(ckpt, parallel, *extra))
    on_disk_at_kill: list[int] = []
    try:
        for restart, step in enumerate(kill_steps):
            progress = job.wait_for(step=step, restart=restart, timeout=120)
            # Each kill lands after a commit: a restart then has something it must resume from,
            # however late a loaded host lets the (async) save finish.
            on_disk_at_kill.append(wait_committed(job, ckpt, after=None, timeout=120))
            victim = progress[rng.randrange(len(progress))]
            os.kill(victim.pid, signal.SIGKILL)
        assert job.wait(240) == 0, job.tail()
    finally:
        job.kill()
    starts = [e for e in job.events() if e["event_type"] == "start" and e["rank"] == 0]
    assert [e["restart"] for e in starts] == list(range(KILLS + 1)), job.tail()
    resumed = [e["resumed_from"] for e in starts[1:]]
    assert all(r is not None and r >= c for r, c in zip(resumed, on_disk_at_kill, strict=True)), \
        f"restarts resumed from {resumed}; committed at each kill: {on_disk_at_kill}"
    assert_bitwise_equal(baselines[parallel], final)


def test_sigterm_saves_exits_with_requeue_code_then_resumes(tmp_path, baselines):
    ckpt = tmp_path / "ckpt"
    job = TorchrunJob(tmp_path / "first", job_args=job_args(ckpt, "ddp", "--step-sleep", "0.05",
                                                            "--ckpt-every", "1000"))
    try:
        job.wait_for(step=8, restart=0, timeout=120)
        job.proc.send_signal(signal.SIGTERM)  # what Slurm and the kubelet send to torchrun
        rc = job.wait(120)
    finally:
        job.kill()
    stopping = [e for e in job.events() if e["event_type"] == "stopping"]
    assert rc != 0, "a stopped, unfinished job must not report success"
    assert len(stopping) == 1 and stopping[0]["exit_code"] == 143, job.tail()
    saved = sorted(p.name for p in ckpt.iterdir())
    assert saved == [f"step_{stopping[0]['step']:08d}"], saved
    assert 8 <= stopping[0]["step"] < STEPS

    final = tmp_path / "final.pt"
    again = TorchrunJob(tmp_path / "second", job_args=job_args(ckpt, "ddp", "--dump-final", str(final)))
    try:
        assert again.wait(180) == 0, again.tail()
    finally:
        again.kill()
    start = next(e for e in again.events() if e["event_type"] == "start")
    assert start["resumed_from"] == stopping[0]["step"]
    assert_bitwise_equal(baselines["ddp"], final)


def test_corrupt_latest_is_skipped_on_resume(tmp_path, baselines):
    ckpt = tmp_path / "ckpt"
    first = TorchrunJob(tmp_path / "first", job_args=job_args(ckpt, "ddp", "--keep-last", "0"))
    assert first.wait(180) == 0, first.tail()
    shard = next((ckpt / f"step_{STEPS:08d}").glob("*.distcp"))
    os.truncate(shard, shard.stat().st_size // 3)  # torn write of the newest
    (ckpt / f"step_{STEPS - 5:08d}" / ".metadata").write_bytes(b"garbage")  # and a garbled one
    final = tmp_path / "final.pt"
    second = TorchrunJob(tmp_path / "second", job_args=job_args(ckpt, "ddp", "--dump-final", str(final)))
    assert second.wait(180) == 0, second.tail()
    start = next(e for e in second.events() if e["event_type"] == "start")
    assert start["resumed_from"] == STEPS - 10
    assert_bitwise_equal(baselines["ddp"], final)

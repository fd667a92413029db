"""Run the reference job under torchrun on this host and reach its workers by PID (tests, bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lifecycle.job_log import job_events

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env() -> dict[str, str]:
    env = dict(os.environ)
    # Restarted workers must not reuse the agent's shared store (dead peers' addresses linger).
    env.update(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO))
    return env


@dataclass
class Progress:
    pid: int
    step: int
    restart: int


class TorchrunJob:
    """``torchrun ... -m gpufleet.lifecycle.jobs.gpt_reference`` in its own session, logs in ``workdir``."""

    def __init__(self, workdir: Path, *, nproc: int = 2, max_restarts: int = 0, job_args: list[str]) -> None:
        self.workdir = workdir
        self.progress_dir = workdir / "progress"
        self.log_path = workdir / "torchrun.log"
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = [str(TORCHRUN), "--nnodes", "1", "--nproc_per_node", str(nproc),
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}",
               "--rdzv_id", f"job{os.getpid()}", "--max-restarts", str(max_restarts),
               "--monitor-interval", "0.1", "-m", "gpufleet.lifecycle.jobs.gpt_reference",
               "--progress-dir", str(self.progress_dir), *job_args]
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=job_env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def progress(self) -> dict[int, Progress]:
        out: dict[int, Progress] = {}
        for f in self.progress_dir.glob("rank*"):
            try:
                pid, step, restart = f.read_text().split()
            except (OSError, ValueError):
                continue
            out[int(f.name[4:])] = Progress(int(pid), int(step), int(restart))
        return out

    def wait_for(self, *, step: int, restart: int, timeout: float) -> dict[int, Progress]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prog = self.progress()
            if prog and all(p.restart == restart and p.step >= step for p in prog.values()):
                return prog
            if self.proc.poll() is not None:
                raise AssertionError(f"torchrun exited {self.proc.returncode} early:\n{self.tail()}")
            time.sleep(0.01)
        raise AssertionError(f"no rank reached step {step} in restart {restart} within {timeout}s:\n{self.tail()}")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"torchrun still running after {timeout}s:\n{self.tail()}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        """End torchrun and its workers: the process group we created, nothing else."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def events(self) -> list[dict]:
        return job_events(self.log_path)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

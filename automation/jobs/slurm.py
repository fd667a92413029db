"""Slurm jobs through the client commands (sbatch, squeue, scontrol, scancel); SLURM_CONF honoured."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpufleet.infra.errors import SlurmError


@dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """One row of ``gpufleet jobs ls`` for Slurm."""

    job_id: str
    """Slurm job id."""
    name: str
    """Job name."""
    state: str
    """PENDING, RUNNING, REQUEUED, ..."""
    elapsed: str
    """Time used so far."""
    nodes: str
    """Node list, or the reason it is pending."""
    restarts: int
    """Times Slurm requeued it."""


class SlurmClient:
    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> None:
        self.env = dict(env if env is not None else os.environ)
        self.timeout_s = timeout_s

    def _run(self, *argv: str, stdin: str | None = None) -> str:
        exe = shutil.which(argv[0], path=self.env.get("PATH"))
        if exe is None:
            raise SlurmError(f"{argv[0]} not found on PATH", "install slurm-client or run on a login node")
        try:
            done = subprocess.run([exe, *argv[1:]], input=stdin, env=self.env, capture_output=True,
                                  text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(argv)} timed out after {self.timeout_s:.0f} s") from None
        if done.returncode != 0:
            raise SlurmError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def submit(self, script: str) -> str:
        return self._run("sbatch", "--parsable", stdin=script).strip().split(";")[0]

    def list(self) -> list[SlurmJob]:
        out = self._run("squeue", "-h", "-o", "%i|%j|%T|%M|%R")
        jobs = []
        for line in out.splitlines():
            job_id, name, state, elapsed, nodes = line.split("|", 4)
            jobs.append(SlurmJob(job_id=job_id, name=name, state=state, elapsed=elapsed, nodes=nodes,
                                 restarts=self._restarts(job_id)))
        return jobs

    def _show(self, job_id: str) -> dict[str, str]:
        text = self._run("scontrol", "show", "job", "-o", job_id)
        fields: dict[str, str] = {}
        for token in text.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        return fields

    def _restarts(self, job_id: str) -> int:
        try:
            return int(self._show(job_id).get("Restarts", "0"))
        except (SlurmError, ValueError):
            return 0

    def log_path(self, job_id: str) -> Path:
        return Path(self._show(job_id)["StdOut"])

    def logs(self, job_id: str, tail: int) -> str:
        path = self.log_path(job_id)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            raise SlurmError(f"job {job_id} has no output yet at {path}") from None
        return "\n".join(lines[-tail:]) + "\n"

    def cancel(self, job_id: str) -> None:
        self._run("scancel", job_id)

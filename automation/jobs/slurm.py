"""``gpufleet jobs`` on Slurm: list, follow and cancel jobs through the one Slurm client."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from gpufleet.automation.slurm_client import SlurmClient
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


def own_output(job_id: str, record: dict[str, str]) -> Path:
    """The job's own output file, as gpufleet renders it (``--output=%x-%j.out`` in its WorkDir).

    ``StdOut`` is whatever the job asked for; a job may point it at any file its submitter could
    name (``/etc/shadow``, another user's log). Only ``<WorkDir>/<JobName>-<JobId>.out`` is read,
    with no link on the way out of WorkDir, and only when the job's own user owns it.
    """
    workdir, name, recorded = record.get("WorkDir", ""), record.get("JobName", ""), record.get("StdOut", "")
    if not workdir.startswith("/") or not name or "/" in name:
        raise SlurmError(f"job {job_id}: no working directory or name to find its output by")
    expected = Path(workdir) / f"{name}-{record.get('JobId', job_id)}.out"
    if Path(recorded) != expected:
        raise SlurmError(f"job {job_id} writes its output to {recorded!r}, not {expected}: "
                         "gpufleet reads only the output its own jobs write")
    real = expected.resolve()
    if real.parent != Path(workdir).resolve():
        raise SlurmError(f"job {job_id}: {expected} leads out of {workdir} (a link); not read")
    uid = re.search(r"\((\d+)\)", record.get("UserId", ""))
    if uid and real.exists() and real.stat().st_uid != int(uid.group(1)):
        raise SlurmError(f"job {job_id}: {expected} is not owned by the job's user {record['UserId']}; not read")
    return expected


class SlurmJobs:
    def __init__(self, slurm: SlurmClient | None = None) -> None:
        self.slurm = slurm or SlurmClient()

    def list(self) -> list[SlurmJob]:
        return [SlurmJob(job_id=j.job_id, name=j.name, state=j.state, elapsed=j.elapsed, nodes=j.nodes,
                         restarts=self._restarts(j.job_id)) for j in self.slurm.queue()]

    def _restarts(self, job_id: str) -> int:
        try:
            return int(self.slurm.job(job_id).get("Restarts", "0"))
        except (SlurmError, ValueError):
            return 0  # the job left the queue between the two calls

    def log_path(self, job_id: str) -> Path:
        return own_output(job_id, self.slurm.job(job_id))

    def logs(self, job_id: str, tail: int) -> str:
        path = self.log_path(job_id)
        try:
            # O_NOFOLLOW: the checked path itself, never a link swapped in after the check
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SlurmError(f"job {job_id} has no output yet at {path}") from None
        except OSError as err:
            raise SlurmError(f"job {job_id}: cannot read its output {path}: {err.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SlurmError(f"job {job_id}: its output {path} is not a regular file")
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-tail:]) + "\n"

    def cancel(self, job_id: str) -> None:
        self.slurm.cancel(job_id)

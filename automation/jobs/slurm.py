"""``gpufleet jobs`` on Slurm: list, follow and cancel jobs through the one Slurm client."""

from __future__ import annotations

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
        return Path(self.slurm.job(job_id)["StdOut"])

    def logs(self, job_id: str, tail: int) -> str:
        path = self.log_path(job_id)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            raise SlurmError(f"job {job_id} has no output yet at {path}") from None
        return "\n".join(lines[-tail:]) + "\n"

    def cancel(self, job_id: str) -> None:
        self.slurm.cancel(job_id)

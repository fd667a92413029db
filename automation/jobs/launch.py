"""``gpufleet launch``: validate the job file, render for its backend, submit unless dry-run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpufleet.automation.jobs.k8s import render_manifests, submit_manifests
from gpufleet.automation.jobs.sbatch import render_sbatch
from gpufleet.automation.jobs.spec import Backend, JobSpec, load_job
from gpufleet.automation.slurm_client import SlurmClient


@dataclass(frozen=True, kw_only=True)
class LaunchResult:
    """What ``gpufleet launch`` did."""

    name: str
    """Job name."""
    backend: str
    """slurm or eks."""
    submitted: bool
    """False for --dry-run."""
    job_id: str | None
    """Slurm job id or ``namespace/name`` of the Kubernetes Job; None when not submitted."""
    rendered: str
    """The sbatch script, or the manifests as a YAML stream."""


def render(spec: JobSpec) -> str:
    if spec.backend is Backend.SLURM:
        return render_sbatch(spec)
    return yaml.safe_dump_all(render_manifests(spec), sort_keys=False)


def launch(path: str | Path, *, dry_run: bool, slurm: SlurmClient | None = None,
           kube_api: Any = None, stack: str | None = None, context: str | None = None) -> LaunchResult:
    """EKS jobs go to the cluster of ``stack`` or the kube ``context`` (automation/kube_client.py)."""
    spec = load_job(path)
    rendered = render(spec)
    job_id = None
    if not dry_run:
        if spec.backend is Backend.SLURM:
            job_id = (slurm or SlurmClient()).submit(rendered)
        else:
            if kube_api is None:
                from gpufleet.automation.kube_client import api_client

                kube_api = api_client(stack, context)
            job_id = submit_manifests(render_manifests(spec), kube_api)
    return LaunchResult(name=spec.name, backend=spec.backend.value, submitted=not dry_run,
                        job_id=job_id, rendered=rendered)

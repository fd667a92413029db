"""``gpufleet jobs ls|logs|cancel``: follow training jobs on Slurm or EKS."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, handle_errors, print_json
from gpufleet.automation.jobs.slurm import SlurmJobs

jobs_app = typer.Typer(help="List, follow and cancel training jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

Backend = Annotated[str, typer.Option("--backend", help="slurm or eks.")]
Namespace = Annotated[str, typer.Option("--namespace", help="EKS namespace.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client(backend: str, namespace: str):
    if backend == "eks":
        from gpufleet.automation.jobs.eks import EksJobs
        from gpufleet.automation.orchestrators.kubernetes import api_client

        return EksJobs(api_client(), namespace)
    if backend != "slurm":
        from gpufleet.infra.errors import BadInputError

        raise BadInputError(f"--backend {backend!r}: expected slurm or eks")
    return SlurmJobs()


@jobs_app.command("ls")
@handle_errors
def ls(backend: Backend = "slurm", namespace: Namespace = "training", json_output: Json = False) -> None:
    """List jobs."""
    rows = _client(backend, namespace).list()
    if json_output:
        print_json(rows)
        return
    table = Table(box=None)
    if rows:
        for name in vars(rows[0]):
            table.add_column(name)
    for row in rows:
        table.add_row(*(str(v) for v in vars(row).values()))
    console.print(table if rows else "no jobs")


@jobs_app.command("logs")
@handle_errors
def logs(job: Annotated[str, typer.Argument(help="Slurm job id, or EKS job name.")],
         backend: Backend = "slurm", namespace: Namespace = "training",
         tail: Annotated[int, typer.Option(help="Last N lines.")] = 100, json_output: Json = False) -> None:
    """Print the tail of a job's output (rank 0 on EKS)."""
    text = _client(backend, namespace).logs(job.split("/")[-1], tail)
    if json_output:
        print_json({"job": job, "lines": text.splitlines()})
    else:
        sys.stdout.write(text)


@jobs_app.command("cancel")
@handle_errors
def cancel(job: Annotated[str, typer.Argument(help="Slurm job id, or EKS job name.")],
           backend: Backend = "slurm", namespace: Namespace = "training", json_output: Json = False) -> None:
    """Cancel a job (its checkpoints stay)."""
    _client(backend, namespace).cancel(job.split("/")[-1])
    if json_output:
        print_json({"job": job, "cancelled": True})
    else:
        console.print(f"cancelled {job}")

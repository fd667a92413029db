"""``gpufleet jobs ls|logs|cancel``: follow training jobs on Slurm or EKS."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, handle_errors, print_json
from gpufleet.automation.cli.tables import table
from gpufleet.automation.jobs.slurm import SlurmJobs

jobs_app = typer.Typer(help="List, follow and cancel training jobs.", no_args_is_help=True,
                       context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(jobs_app, name="jobs")

Backend = Annotated[str, typer.Option("--backend", help="slurm or eks.")]
Namespace = Annotated[str, typer.Option("--namespace", help="EKS namespace.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Stack = Annotated[str, typer.Option("--stack", help="EKS: the stack whose cluster runs the jobs (kube context gpufleet-STACK).")]
Context = Annotated[str | None, typer.Option("--context", help="EKS: this kube context instead (see docs/eks.md).")]


def _client(backend: str, namespace: str, stack: str, context: str | None):
    if backend == "eks":
        from gpufleet.automation.jobs.eks import EksJobs
        from gpufleet.automation.kube_client import api_client

        return EksJobs(api_client(stack, context), namespace)
    if backend != "slurm":
        from gpufleet.infra.errors import BadInputError

        raise BadInputError(f"--backend {backend!r}: expected slurm or eks")
    return SlurmJobs()


@jobs_app.command("ls")
@handle_errors
def ls(backend: Backend = "slurm", namespace: Namespace = "training", stack: Stack = "training",
       context: Context = None, json_output: Json = False) -> None:
    """List jobs."""
    rows = _client(backend, namespace, stack, context).list()
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("no jobs")
        return
    listing = table(*vars(rows[0]))
    for row in rows:
        listing.add_row(*(str(v) for v in vars(row).values()))
    console.print(listing)


@jobs_app.command("logs")
@handle_errors
def logs(job: Annotated[str, typer.Argument(help="Slurm job id, or EKS job name.")],
         backend: Backend = "slurm", namespace: Namespace = "training", stack: Stack = "training",
         context: Context = None, tail: Annotated[int, typer.Option(help="Last N lines.")] = 100,
         json_output: Json = False) -> None:
    """Print the tail of a job's output (rank 0 on EKS)."""
    text = _client(backend, namespace, stack, context).logs(job.split("/")[-1], tail)
    if json_output:
        print_json({"job": job, "lines": text.splitlines()})
    else:
        sys.stdout.write(text)


@jobs_app.command("cancel")
@handle_errors
def cancel(job: Annotated[str, typer.Argument(help="Slurm job id, or EKS job name.")],
           backend: Backend = "slurm", namespace: Namespace = "training", stack: Stack = "training",
           context: Context = None, json_output: Json = False) -> None:
    """Cancel a job (its checkpoints stay)."""
    _client(backend, namespace, stack, context).cancel(job.split("/")[-1])
    if json_output:
        print_json({"job": job, "cancelled": True})
    else:
        console.print(f"cancelled {job}")

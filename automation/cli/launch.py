"""``gpufleet launch JOB.yaml``: submit a training job to Slurm or EKS."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.output import console, handle_errors, print_json
from gpufleet.automation.jobs.launch import launch as launch_job


@app.command("launch")
@handle_errors
def launch(
    job_file: Annotated[Path, typer.Argument(help="Job file (YAML); see examples/*.yaml.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render and print, submit nothing.")] = False,
    stack: Annotated[str, typer.Option("--stack", help="EKS: the stack whose cluster runs the job "
                                       "(kube context gpufleet-STACK).")] = "training",
    context: Annotated[str | None, typer.Option("--context", help="EKS: this kube context instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a job file, render it for its backend and submit it."""
    with console.status(f"submitting {job_file}", spinner="dots") if not (dry_run or json_output) else contextlib.nullcontext():
        result = launch_job(job_file, dry_run=dry_run, stack=stack, context=context)
    if json_output:
        print_json(result)
    elif dry_run:
        sys.stdout.write(result.rendered)  # verbatim: a script or manifests to pipe elsewhere
    else:
        console.print(f"submitted [bold]{result.name}[/] to {result.backend}: {result.job_id}")
        console.print(f"follow it: gpufleet jobs logs {result.job_id} --backend {result.backend}")


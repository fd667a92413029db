"""`gpufleet usage`: where the GPU-hours went, by account, pool, workload class or move."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gpufleet.automation import figures
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.options import Inventory
from gpufleet.automation.cli.output import console, err_console, handle_errors, print_json, say
from gpufleet.automation.cli.tables import table
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.automation.usage import chart, ledger, report, sources
from gpufleet.automation.usage.period import parse_period
from gpufleet.infra.errors import BadInputError


@app.command("usage")
@handle_errors
def usage(
    inventory: Inventory,
    since: Annotated[str, typer.Option("--since", metavar="TIME", help="Start: an age (7d, 12h) or ISO 8601.")] = "7d",
    until: Annotated[str, typer.Option("--until", metavar="TIME", help="End: 'now', an age or ISO 8601.")] = "now",
    by: Annotated[str, typer.Option("--by", metavar="account|pool|class|move|job",
                                  help="How to group; job: Slurm's jobs (run where SLURM_CONF names the cluster) and EKS pods' GPU requests.")] = "account",
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile for the platform account.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Write hourly rows as CSV (FOCUS column names).")] = None,
    chart_path: Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Draw GPUs per account and class over time (.png, .svg or .pdf).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    prometheus_url: Annotated[str | None, typer.Option(
        "--prometheus-url", metavar="URL",
        help="--by job on EKS: query this Prometheus instead of the platform's AMP workspace.")] = None,
) -> None:
    """GPU-hours and cost of the reserved capacity: training, inference, moving, spare and idle."""
    now = time.time()
    start, end = parse_period(since, until, now)
    groupings = (*report.GROUPINGS, "job")
    if by not in groupings:
        raise BadInputError(f"--by {by!r}: choose one of {', '.join(groupings)}")
    if chart_path is not None:
        figures.check_path(chart_path)
    if prometheus_url is not None and not prometheus_url.startswith(("http://", "https://")):
        raise BadInputError(f"--prometheus-url {prometheus_url!r}: not an http(s) URL")
    fleet = load_inventory(inventory)
    if by == "job" and not (sources.slurm_stacks(fleet) or sources.orchestrated(fleet, "eks")):
        raise BadInputError(f"--by job: no stack of {inventory} runs Slurm or EKS", "use --by account|pool|class|move")
    access: AwsAccess | None = None
    if start == end:
        pools, nodes, phases = [], [], []
    else:
        access = AwsAccess(fleet, operation="usage", profile=profile)
        with err_console.status("reading the fleet's history...") as spinner:
            pools, nodes, phases = sources.read(fleet, access, start, now=now, on_step=spinner.update)
    result = ledger.compute(start, end, pools, nodes, phases)
    problems = ledger.reconcile(result, pools)
    if by == "job":
        _jobs(fleet, access, result, nodes, json_output, prometheus_url)
        return
    lines = report.summarise(result, by)
    if csv_path is not None:
        csv_path.write_text(report.to_csv(result, pools))
    if chart_path is not None:
        chart.write(chart_path, result, phases)
    doc = {"since": report.iso(start), "until": report.iso(end), "by": by,
           "lines": [{**line.key, "gpu_hours": round(line.gpu_hours, 6), "cost_usd": round(line.cost_usd, 2)}
                     for line in lines],
           "total": {"gpu_hours": round(sum(r.gpu_hours for r in result.rows), 6),
                     "cost_usd": round(sum(r.cost_usd for r in result.rows), 2)},
           "over_reservation_node_hours": round(sum(result.over.values()) / ledger.HOUR_S, 6),
           "reconciled": not problems, "problems": problems}
    if json_output:
        print_json(doc)
        return
    if not lines:
        console.print(f"no usage between {doc['since']} and {doc['until']}", highlight=False)
        return
    columns = list(lines[0].key)
    console.print(f"GPU usage from {doc['since']} to {doc['until']} (by {by})", highlight=False)
    listing = table(*columns, "GPU-hours", "cost $", whole=("stack", "account_id", "pool", "op_id"))
    for line in lines:
        listing.add_row(*(line.key[c] for c in columns), f"{line.gpu_hours:,.2f}", f"{line.cost_usd:,.2f}")
    listing.add_row(*(["total"] + [""] * (len(columns) - 1)), f"{sum(line.gpu_hours for line in lines):,.2f}",
                    f"{sum(line.cost_usd for line in lines):,.2f}", style="bold")
    console.print(listing)
    if doc["over_reservation_node_hours"]:
        console.print(f"[yellow]{doc['over_reservation_node_hours']:.2f} node-hours ran beyond the reservations "
                      "(billed on-demand)[/]", highlight=False)
    for problem in problems:
        say(str(problem), label="does not reconcile: ", style="red")


def _jobs(fleet, access: AwsAccess | None, result: ledger.Ledger, nodes, json_output: bool,
          prometheus_url: str | None) -> None:
    """``--by job``: Slurm's jobs and Kubernetes' pods as a breakdown of the classes (they add nothing
    to totals)."""
    stacks = sources.slurm_stacks(fleet)
    found, findings = (sources.jobs(SlurmClient(), result.start, result.end, [n for n in nodes if n.stack in stacks])
                       if stacks else ([], []))
    training = sum(r.gpu_hours for r in result.rows if r.klass == "training" and r.stack in stacks)
    kube = _kubernetes(fleet, access, result, prometheus_url)
    doc = {"since": report.iso(result.start), "until": report.iso(result.end), "by": "job", "stacks": stacks,
           "lines": [{"job_id": j.job_id, "account": j.account, "user": j.user, "gpus": j.gpus,
                      "start": report.iso(j.start), "end": report.iso(j.end) if j.end is not None else None,
                      "state": j.state, "nodes": j.node_list, "gpu_hours": round(j.gpu_hours, 6)} for j in found],
           "jobs_gpu_hours": round(sum(j.gpu_hours for j in found), 6),
           "training_gpu_hours": round(training, 6), "findings": findings, "kubernetes": kube}
    if json_output:
        print_json(doc)
        return
    if kube is not None:
        _print_kubernetes(kube)
    if not stacks:
        return
    if not found:
        console.print(f"no Slurm jobs between {doc['since']} and {doc['until']}", highlight=False)
    else:
        console.print(f"Slurm jobs from {doc['since']} to {doc['until']} ({', '.join(stacks)})", highlight=False)
        jobs = table("job", "account", "user", "GPUs", "start", "end", "state", "GPU-hours", whole=("job",))
        for line in doc["lines"]:
            jobs.add_row(line["job_id"], line["account"], line["user"], str(line["gpus"]), line["start"],
                          line["end"] or "running", line["state"], f"{line['gpu_hours']:,.4f}")
        jobs.add_row("jobs", "", "", "", "", "", "", f"{doc['jobs_gpu_hours']:,.4f}", style="bold")
        console.print(jobs)
        console.print(f"training class of {', '.join(stacks)}: {training:,.4f} GPU-hours", highlight=False)
    for finding in findings:
        say(str(finding), label="finding: ", style="yellow")


def _kubernetes(fleet, access: AwsAccess | None, result: ledger.Ledger, url: str | None) -> dict | None:
    """Pods' GPU requests per namespace and job of the EKS stacks (None: no EKS stack, or a sandbox
    that stands in for the clusters and no Prometheus named)."""
    stacks = sources.orchestrated(fleet, "eks")
    if not stacks or (fleet.orchestrator_stand_in and url is None):
        return None
    found = []
    if access is not None:
        query = sources.prometheus(fleet, access, url)
        with err_console.status("querying the central Prometheus..."):
            found = sources.kubernetes_jobs(query, stacks, result.start, result.end)
    nodes = sum(r.gpu_hours for r in result.rows if r.stack in stacks and r.klass in ("training", "inference"))
    return {"stacks": stacks,
            "lines": [{"stack": j.stack, "namespace": j.namespace, "owner_kind": j.owner_kind, "job": j.owner,
                       "pods": j.pods, "first": report.iso(j.first), "last": report.iso(j.last),
                       "gpu_hours": round(j.gpu_hours, 6)} for j in found],
            "requested_gpu_hours": round(sum(j.gpu_hours for j in found), 6),
            "nodes_gpu_hours": round(nodes, 6)}


def _print_kubernetes(kube: dict) -> None:
    stacks = ", ".join(kube["stacks"])
    if not kube["lines"]:
        console.print(f"no GPU pods on {stacks} in the period", highlight=False)
        return
    console.print(f"Kubernetes GPU requests of running pods ({stacks})", highlight=False)
    pods = table("stack", "namespace", "kind", "job", "pods", "first", "last", "GPU-hours", whole=("job",))
    for line in kube["lines"]:
        pods.add_row(line["stack"], line["namespace"], line["owner_kind"], line["job"], str(line["pods"]),
                      line["first"], line["last"], f"{line['gpu_hours']:,.4f}")
    pods.add_row("requested", "", "", "", "", "", "", f"{kube['requested_gpu_hours']:,.4f}", style="bold")
    console.print(pods)
    console.print(f"training and inference classes of {stacks}: {kube['nodes_gpu_hours']:,.4f} GPU-hours",
                  highlight=False)

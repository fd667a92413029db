"""On a real local Slurm with slurmdbd and MariaDB: jobs of known length and GPU count give exactly
those GPU-hours, through the pure function and through ``gpufleet usage --by job``.

The GPU count is what each job asked for (whole nodes of 8 GRES GPUs); the length is what slurmdbd
recorded (``End - Start``, whole seconds), checked to lie inside the moments the test saw the job
submitted and finished, and to be at least the job's ``sleep``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import time

import pytest

from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.automation.usage.jobs import SACCT_FIELDS, parse_sacct
from tests.automation.usage.test_usage_pods import family_lines, pod_series, render
from tests.conftest import require_binary
from tests.prometheus_harness import backfilled_prometheus

pytestmark = [pytest.mark.slurm, pytest.mark.emulator, pytest.mark.promtool]

JOBS = {"one-node": (1, 2), "two-nodes": (2, 3)}
"""name -> (nodes, seconds it sleeps); every node brings 8 GPUs."""


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_jobs_of_known_length_and_gpus_give_exactly_those_gpu_hours(fleet, make_local_slurm, tmp_path):
    from slurm_harness import ACCOUNT, ACCOUNTING_BINARIES

    for name in ACCOUNTING_BINARIES:
        require_binary(name)
    slurm = make_local_slurm(num_nodes=3, accounting=True)
    gpus_per_node = slurm.spec.partitions[0].gpus_per_node
    assert gpus_per_node == 8
    submitted, ids = time.time(), {}
    for name, (nodes, seconds) in JOBS.items():
        ids[name] = str(slurm.sbatch(f"#!/bin/bash\nsleep {seconds}\n", "-J", name, "-N", str(nodes),
                                     f"--gres=gpu:{gpus_per_node}", "-A", ACCOUNT))
    client = SlurmClient(env=slurm.env)
    period = (math.floor(submitted) - 60, math.floor(submitted) + 600)

    def recorded():
        jobs = {j.job_id: j for j in parse_sacct(client.accounting(*period, SACCT_FIELDS), *period)}
        return jobs if all(i in jobs and jobs[i].end is not None for i in ids.values()) else None

    jobs = slurm.wait_until(recorded, timeout=60, what="both jobs ended in slurmdbd", interval=0.5)
    finished = time.time()
    for name, (nodes, seconds) in JOBS.items():
        job = jobs[ids[name]]
        assert job.gpus == nodes * gpus_per_node and job.account == ACCOUNT and job.user == "root"
        assert job.state == "COMPLETED"
        assert math.floor(submitted) <= job.start and job.end <= math.ceil(finished)
        assert job.end - job.start >= seconds
        assert job.gpu_seconds == nodes * gpus_per_node * (job.end - job.start)

    two = jobs[ids["two-nodes"]]
    clipped = parse_sacct(client.accounting(two.start + 1, two.end, SACCT_FIELDS), two.start + 1, two.end)
    assert {j.job_id: j.gpu_seconds for j in clipped}[two.job_id] == 16 * (two.end - two.start - 1)

    env = dict(os.environ, SLURM_CONF=str(slurm.conf_path), PATH=slurm.env["PATH"])
    # The EKS stack's pods, in a real Prometheus the CLI is pointed at (the sandbox has no cluster):
    # a Job of two 8-GPU pods running 30 s on the query's grid, done before the submissions (the
    # period ends now: nothing of the future counts), so 2 x 8 x 30 GPU-seconds.
    lines = family_lines()
    for i in range(2):
        pod_series(lines, "inference", "research", f"finetune-{i}", ("Job", "finetune"), 8,
                   [("Running", 0, 30), ("Succeeded", 30, 60)], t0=period[0])
    with backfilled_prometheus(tmp_path / "prometheus", render(lines)) as prometheus_url:
        done = subprocess.run([sys.executable, "-m", "gpufleet.automation", "usage", "--by", "job", "--json",
                               "--since", iso(period[0]), "--until", iso(period[1]),
                               "--inventory", str(fleet.inventory_path), "--prometheus-url", prometheus_url],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    kube = doc["kubernetes"]
    assert kube["stacks"] == ["inference"] and kube["requested_gpu_hours"] == round(2 * 8 * 30 / 3600, 6)
    assert [(k["namespace"], k["owner_kind"], k["job"], k["pods"], k["first"], k["last"]) for k in kube["lines"]] == [
        ("research", "Job", "finetune", 2, iso(period[0]), iso(period[0] + 30))]
    lines = {line["job_id"]: line for line in doc["lines"]}
    assert doc["stacks"] == ["training"]
    for name, (nodes, _seconds) in JOBS.items():
        job = jobs[ids[name]]
        assert lines[job.job_id]["gpus"] == nodes * 8
        assert lines[job.job_id]["gpu_hours"] == round(nodes * 8 * (job.end - job.start) / 3600, 6)
        assert (lines[job.job_id]["start"], lines[job.job_id]["end"]) == (iso(job.start), iso(job.end))
    assert doc["jobs_gpu_hours"] == round(sum(j.gpu_hours for j in jobs.values()), 6)
    # The local nodes (node1..node3) are no instances of the sandbox's fleet: every GPU-second is a finding.
    assert len(doc["findings"]) == 3 and all("on no instance of the fleet" in f for f in doc["findings"])

    text = subprocess.run([sys.executable, "-m", "gpufleet.automation", "usage", "--by", "job",
                           "--since", iso(period[0]), "--until", iso(period[1]),
                           "--inventory", str(fleet.inventory_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    assert f"{ids['two-nodes']} " in text.stdout and "finding:" in text.stderr

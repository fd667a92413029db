"""GPU-hours per Slurm job, from Slurm's own accounting (slurmdbd, read with ``sacct``).

Pure: sacct's text in, jobs clipped to a period out. A job's GPUs are its ``AllocTRES``
``gres/gpu`` count (``AccountingStorageTRES=gres/gpu`` in slurm.conf makes slurmdbd record it);
its time is ``[Start, End)``, a running job's to the period's end. Jobs are a breakdown of the
training class: they never add to the ledger's totals. GPU-seconds a job spent on no node of the
fleet (a node name without an instance id, or outside that instance's life) are findings.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpufleet.automation.usage.spans import NodeSpan
from gpufleet.infra.errors import SlurmError

SACCT_FIELDS = ("JobID", "Account", "User", "AllocTRES", "Start", "End", "State", "NodeList")
"""What ``sacct --parsable2 --noheader -X --format=`` is asked for, in this order."""
INSTANCE = re.compile(r"i-[0-9a-f]{8,17}")
UNSET = {"", "Unknown", "None"}


@dataclass(frozen=True, kw_only=True)
class JobUsage:
    """One job's GPU time inside the report's period."""

    job_id: str
    account: str
    user: str
    gpus: int
    """``gres/gpu`` of its AllocTRES (0 when it held none)."""
    start: float
    """When it started (epoch seconds, UTC), as slurmdbd recorded it."""
    end: float | None
    """When it ended; None while it runs."""
    state: str
    node_list: str
    """Slurm's compressed host list (``node[1-2]``)."""
    gpu_seconds: float
    """GPUs times the part of ``[start, end)`` inside the period."""

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        name, _, value = item.partition("=")
        if name == "gres/gpu":
            return int(value)
    return 0


def _time(value: str, job_id: str) -> float | None:
    if value in UNSET:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise SlurmError(f"sacct: job {job_id} has time {value!r}, not ISO 8601",
                         "the client runs sacct with TZ=UTC and Slurm's default time format") from None
    return parsed.replace(tzinfo=datetime.UTC).timestamp() if parsed.tzinfo is None else parsed.timestamp()


def parse_sacct(text: str, start: float, end: float) -> list[JobUsage]:
    """Jobs of ``sacct --parsable2 --noheader -X --format=<SACCT_FIELDS>`` (times in UTC), clipped
    to ``[start, end)``; jobs that never started or ran wholly outside the period are left out."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != len(SACCT_FIELDS):
            raise SlurmError(f"sacct: {line!r} has {len(parts)} fields, expected {len(SACCT_FIELDS)} "
                             f"({','.join(SACCT_FIELDS)})")
        job_id, account, user, tres, began, ended, state, node_list = parts
        t0, t1 = _time(began, job_id), _time(ended, job_id)
        if t0 is None:
            continue
        lo, hi = max(t0, start), min(end if t1 is None else t1, end)
        if hi <= lo and not (t0 == t1 and start <= t0 < end):
            continue
        gpus = _gpus(tres)
        jobs.append(JobUsage(job_id=job_id, account=account, user=user, gpus=gpus, start=t0, end=t1,
                             state=state.split()[0] if state else state, node_list=node_list,
                             gpu_seconds=gpus * max(0.0, hi - lo)))
    return sorted(jobs, key=lambda j: (j.start, j.job_id))


def _uncovered(lo: float, hi: float, spans: Sequence[NodeSpan], until: float) -> float:
    """Seconds of ``[lo, hi)`` in none of ``spans`` (a span still running lasts to ``until``)."""
    at, gap = lo, 0.0
    for span in sorted(spans, key=lambda s: s.start):
        s_end = until if span.end is None else span.end
        if s_end <= at:
            continue
        if span.start >= hi:
            break
        gap += max(0.0, span.start - at)
        at = max(at, s_end)
        if at >= hi:
            return gap
    return gap + max(0.0, hi - at)


def findings(jobs: Sequence[JobUsage], hosts: Mapping[str, Sequence[str]], nodes: Sequence[NodeSpan],
             start: float, end: float) -> list[str]:
    """GPU-seconds of jobs that no node's life covers. ``hosts``: node list -> its host names
    (Slurm's own expansion); a host's instance is the id in its name (``train-h100-i-0abc...``)."""
    by_instance: dict[str, list[NodeSpan]] = {}
    for node in nodes:
        by_instance.setdefault(node.instance_id, []).append(node)
    out = []
    for job in jobs:
        names = list(hosts.get(job.node_list, ()))
        if not names or not job.gpus:
            continue
        lo, hi = max(job.start, start), min(end if job.end is None else job.end, end)
        per_host = job.gpus / len(names)
        for name in names:
            found = INSTANCE.search(name)
            spans = by_instance.get(found.group(0), []) if found else []
            gap = _uncovered(lo, hi, spans, end)
            if gap > 0:
                why = "outside that instance's life" if spans else "on no instance of the fleet"
                out.append(f"job {job.job_id} ({job.account}/{job.user}): {per_host * gap:.0f} GPU-seconds "
                           f"on {name} {why}")
    return out

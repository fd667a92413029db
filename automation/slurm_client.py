"""The one client of Slurm's commands (sbatch, squeue, scontrol, scancel, sacct): the rebalancer's
adapter (automation/orchestrators/slurm.py), ``gpufleet jobs`` / ``launch`` (automation/jobs/slurm.py)
and ``gpufleet usage --by job`` (automation/usage/jobs.py parses what :meth:`SlurmClient.accounting`
returns) all go through it.

Commands run as argument lists (no shell) in the given environment, whose ``SLURM_CONF`` picks the
cluster (Slurm's own rule; unset: the compiled-in default), each bounded by a timeout. Any failure
(not installed, non-zero exit, timeout) is a ``SlurmError`` (exit code 6). Output is asked for in
parseable forms (``scontrol show ... -o``, ``squeue -o`` with ``|``) and parsed here, once.
(The node bundle runs its own ``scontrol`` in lifecycle/health/actions.py: it imports nothing
from the control plane.)
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpufleet.infra.errors import SlurmError

__all__ = ["QueuedJob", "SlurmClient", "SlurmNode", "parse_queue", "parse_records", "parse_show_node"]

FIELD = re.compile(r"([A-Za-z][\w/:.]*)=(.*?)(?=\s+[A-Za-z][\w/:.]*=|$)")
"""``Key=Value`` in a one-line record; a value runs to the next `` Key=`` (values may hold spaces)."""
INSTANCE = re.compile(r"i-[0-9a-f]{8,17}")
QUEUE_FIELDS = ("%i", "%j", "%T", "%M", "%R", "%k")
"""squeue columns: job id, name, state, time used, node list or pending reason, comment (last:
the only free text, so it may hold the separator)."""


def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol show node|job -o``: one record a line."""
    return [dict(FIELD.findall(line.strip())) for line in text.splitlines() if "=" in line]


@dataclass(frozen=True, kw_only=True)
class SlurmNode:
    """A node as ``scontrol show node`` reports it."""

    name: str
    """NodeName."""
    state: str
    """State with its flags, e.g. ``IDLE+DRAIN``."""
    instance_ids: frozenset[str]
    """EC2 instance ids in its NodeName, NodeHostname, Comment or Extra (the bootstrap sets one)."""
    reason: str = ""
    """Why it is drained or down."""
    partitions: tuple[str, ...] = ()
    """Partitions it is in."""
    gres: str = ""
    """Its GRES (``gpu:h100:8``), '' for none."""
    features: tuple[str, ...] = ()
    """AvailableFeatures (the bootstrap sets the node group's name)."""
    addr: str = ""
    """NodeAddr: where the node is reached (a rendezvous hosted on it)."""


def parse_show_node(text: str) -> list[SlurmNode]:
    nodes = []
    for fields in parse_records(text):
        if "NodeName" not in fields:
            continue
        ids: set[str] = set()
        for key in ("NodeName", "NodeHostName", "NodeHostname", "Comment", "Extra"):
            ids.update(INSTANCE.findall(fields.get(key, "")))
        gres = fields.get("Gres", "")
        nodes.append(SlurmNode(name=fields["NodeName"], state=fields.get("State", ""),
                               instance_ids=frozenset(ids), reason=fields.get("Reason", ""),
                               partitions=tuple(p for p in fields.get("Partitions", "").split(",") if p),
                               gres="" if gres == "(null)" else gres,
                               features=tuple(f for f in fields.get("AvailableFeatures", "").split(",")
                                              if f and f != "(null)"),
                               addr=fields.get("NodeAddr", "")))
    return nodes


@dataclass(frozen=True, kw_only=True)
class QueuedJob:
    """One line of ``squeue``."""

    job_id: str
    """Slurm job id."""
    name: str
    """Job name."""
    state: str
    """PENDING, RUNNING, COMPLETING, ..."""
    elapsed: str
    """Time used so far."""
    nodes: str
    """Node list, or the reason it is pending."""
    comment: str
    """The job's comment (jobs publish ``checkpoint=<unix time>`` there)."""


def parse_queue(text: str) -> list[QueuedJob]:
    jobs = []
    for line in text.splitlines():
        parts = line.split("|", len(QUEUE_FIELDS) - 1)
        if len(parts) == len(QUEUE_FIELDS):
            job_id, name, state, elapsed, nodes, comment = parts
            jobs.append(QueuedJob(job_id=job_id, name=name, state=state, elapsed=elapsed, nodes=nodes,
                                  comment="" if comment == "(null)" else comment))
    return jobs


class SlurmClient:
    """Slurm's commands for one cluster: the one ``SLURM_CONF`` in ``env`` (default: this
    process's environment, read when the client is made)."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> None:
        self.env = dict(os.environ if env is None else env)
        self.timeout_s = timeout_s

    def run(self, *argv: str, stdin: str | None = None, check: bool = True, timeout_s: float | None = None,
            env: Mapping[str, str] | None = None) -> str:
        """One command's stdout; with ``check``, a non-zero exit is a SlurmError. ``env`` adds to the client's."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        where = f"SLURM_CONF={self.env['SLURM_CONF']}" if "SLURM_CONF" in self.env else "the default slurm.conf"
        binary = shutil.which(argv[0], path=self.env.get("PATH", os.defpath))
        if binary is None:
            raise SlurmError(f"{argv[0]} is not installed here (PATH={self.env.get('PATH', os.defpath)})",
                             "install slurm-client, or run where Slurm's commands are (a login or head node)")
        try:
            done = subprocess.run([binary, *argv[1:]], input=stdin, env={**self.env, **(env or {})},
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(argv)} timed out after {timeout_s:.0f} s",
                             f"is slurmctld up? `scontrol ping` with {where}") from None
        if check and done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip())[:300]
            raise SlurmError(f"{' '.join(argv)} failed ({done.returncode}): {detail}",
                             f"the command ran with {where}")
        return done.stdout

    # -- reads -----------------------------------------------------------------------------------
    def nodes(self) -> list[SlurmNode]:
        return parse_show_node(self.run("scontrol", "show", "node", "-o"))

    def queue(self, *, node: str | None = None, states: Sequence[str] = ()) -> list[QueuedJob]:
        """Jobs in the queue, optionally only those on ``node`` and in ``states``."""
        argv = ["squeue", "-h", "-o", "|".join(QUEUE_FIELDS)]
        if node is not None:
            argv += ["-w", node]
        if states:
            argv += ["-t", ",".join(states)]
        return parse_queue(self.run(*argv))

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job (StdOut, Restarts, JobState, ...)."""
        records = parse_records(self.run("scontrol", "show", "job", "-o", job_id))
        if not records:
            raise SlurmError(f"scontrol show job {job_id}: no such job")
        return records[0]

    def accounting(self, start: float, end: float, fields: Sequence[str]) -> str:
        """``sacct`` of every user's jobs (allocations only, ``-X``) that ran in ``[start, end)``:
        ``fields`` joined by ``|``, one job a line. Times in and out are UTC (``TZ=UTC``)."""
        def stamp(t: float) -> str:
            return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")

        return self.run("sacct", "--parsable2", "--noheader", "-X", "--allusers", "--duplicates",
                        f"--format={','.join(fields)}", f"--starttime={stamp(start)}", f"--endtime={stamp(end)}",
                        env={"TZ": "UTC", "SLURM_TIME_FORMAT": "standard"})

    def hostnames(self, node_list: str) -> list[str]:
        """A compressed host list (``node[1-3]``) expanded by Slurm itself."""
        return self.run("scontrol", "show", "hostnames", node_list).split()

    def reservations(self) -> list[dict[str, str]]:
        """``scontrol show reservation -o``: one record per reservation (ReservationName, Nodes, ...)."""
        return [r for r in parse_records(self.run("scontrol", "show", "reservation", "-o"))
                if "ReservationName" in r]

    # -- writes ----------------------------------------------------------------------------------
    def submit(self, script: str) -> str:
        """``sbatch`` the script (from stdin); returns the job id."""
        return self.run("sbatch", "--parsable", stdin=script).strip().split(";")[0]

    def update_nodes(self, names: Iterable[str], *, check: bool = True, **fields: str) -> None:
        """``scontrol update NodeName=a,b Key=Value ...`` (State=DRAIN Reason=..., State=RESUME)."""
        self.run("scontrol", "update", f"NodeName={','.join(names)}", *(f"{k}={v}" for k, v in fields.items()),
                 check=check)

    def delete_reservation(self, name: str) -> None:
        self.run("scontrol", "delete", f"ReservationName={name}")

    def srun(self, *argv: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """``srun ARGV`` to completion; its exit status is the caller's to judge (a SlurmError only
        when srun is missing or does not finish in ``timeout_s``)."""
        binary = shutil.which("srun", path=self.env.get("PATH", os.defpath))
        if binary is None:
            raise SlurmError(f"srun is not installed here (PATH={self.env.get('PATH', os.defpath)})",
                             "install slurm-client, or run where Slurm's commands are (a login or head node)")
        try:
            return subprocess.run([binary, *argv], env=self.env, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"srun {' '.join(argv[:6])} ... timed out after {timeout_s:.0f} s") from None

    def reboot(self, names: Iterable[str], reason: str) -> None:
        """``scontrol reboot ASAP nextstate=RESUME``: drain, reboot once idle, then serve again."""
        self.run("scontrol", "reboot", "ASAP", "nextstate=RESUME", f"reason={reason}", ",".join(names))

    def signal(self, job_id: str, signal: str) -> None:
        """Signal every step and the batch shell (``--full``); a job already gone is fine."""
        self.run("scancel", f"--signal={signal}", "--full", job_id, check=False)

    def requeue(self, job_id: str) -> None:
        """Requeue the job (it must allow it); a job already gone or not requeueable is left."""
        self.run("scontrol", "requeue", job_id, check=False)

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

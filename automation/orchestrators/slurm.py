"""Slurm through its own commands (scontrol, squeue, scancel), honouring SLURM_CONF.

A node belongs to an EC2 instance when the instance id appears in its NodeName, NodeHostname,
Comment or Extra field (bootstrap sets one of them; dynamic nodes: ``slurmd -Z --conf
"Extra=instance-id=i-..."``). Jobs publish their newest checkpoint, when they do, as
``checkpoint=<unix time>`` in their comment (``scontrol update JobId=... Comment=...``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpufleet.automation.orchestrators.base import UNVERIFIED_REASON, NodeWork
from gpufleet.infra.errors import SlurmError

CHECKPOINT = re.compile(r"checkpoint=(\d+(?:\.\d+)?)")
INSTANCE = re.compile(r"i-[0-9a-f]{8,17}")
UNAVAILABLE = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "POWER", "FUTURE", "MAINT", "REBOOT", "INVAL")



@dataclass(frozen=True, kw_only=True)
class SlurmNode:
    name: str
    state: str
    instance_ids: frozenset[str]
    reason: str = ""


def parse_show_node(text: str) -> list[SlurmNode]:
    """``scontrol show node -o``: one line per node, ``Key=Value`` fields (values may hold spaces)."""
    nodes = []
    for line in text.splitlines():
        if not line.startswith("NodeName="):
            continue
        fields = dict(re.findall(r"(\w+)=(.*?)(?=\s+\w+=|$)", line))
        ids = set()
        for key in ("NodeName", "NodeHostName", "NodeHostname", "Comment", "Extra"):
            ids.update(INSTANCE.findall(fields.get(key, "")))
        nodes.append(SlurmNode(name=fields["NodeName"], state=fields.get("State", ""), instance_ids=frozenset(ids),
                               reason=fields.get("Reason", "")))
    return nodes


class SlurmOrchestrator:
    kind = "slurm"

    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> None:
        self.env = dict(os.environ if env is None else env)
        self.timeout_s = timeout_s

    def _run(self, *argv: str, check: bool = True) -> str:
        binary = shutil.which(argv[0], path=self.env.get("PATH", os.defpath)) or shutil.which(argv[0])
        if binary is None:
            raise SlurmError(f"{argv[0]} is not installed here", "install slurm-client, or use orchestrator: none")
        try:
            done = subprocess.run([binary, *argv[1:]], env=self.env, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(argv)} timed out after {self.timeout_s:.0f} s") from None
        if check and done.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[:300]}")
        return done.stdout

    def _nodes(self, instance_ids: Iterable[str]) -> dict[str, SlurmNode]:
        wanted = set(instance_ids)
        found: dict[str, SlurmNode] = {}
        for node in parse_show_node(self._run("scontrol", "show", "node", "-o")):
            for iid in node.instance_ids & wanted:
                found[iid] = node
        return found

    def _jobs_on(self, node: str) -> list[tuple[str, str]]:
        out = self._run("squeue", "-h", "-w", node, "-t", "RUNNING,COMPLETING,CONFIGURING,SUSPENDED", "-o", "%i|%k")
        return [tuple(line.split("|", 1)) for line in out.splitlines() if "|" in line]  # type: ignore[misc]

    def work(self, instance_ids: Iterable[str]) -> list[NodeWork]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        out = []
        for iid in ids:
            node = nodes.get(iid)
            if node is None:
                out.append(NodeWork(instance_id=iid, known=False, detail="no Slurm node"))
                continue
            jobs = self._jobs_on(node.name)
            stamps = [float(m.group(1)) for _, comment in jobs if (m := CHECKPOINT.search(comment))]
            out.append(NodeWork(instance_id=iid, busy=bool(jobs), last_checkpoint=min(stamps) if stamps and len(stamps) == len(jobs) else None,
                                detail=f"{node.name} {node.state} jobs={','.join(j for j, _ in jobs) or '-'}"))
        return out

    def request_checkpoint(self, instance_ids: Iterable[str], reason: str) -> None:
        nodes = self._nodes(instance_ids)
        names = sorted({n.name for n in nodes.values()})
        if not names:
            return
        self._run("scontrol", "update", f"NodeName={','.join(names)}", "State=DRAIN", f"Reason={reason}")
        for name in names:
            for job, _ in self._jobs_on(name):
                # The runtime checkpoints on the signal; a job already gone is fine.
                self._run("scancel", "--signal=USR1", "--full", job, check=False)

    def evict(self, instance_ids: Iterable[str]) -> None:
        for node in {n.name for n in self._nodes(instance_ids).values()}:
            for job, _ in self._jobs_on(node):
                self._run("scontrol", "requeue", job, check=False)

    def drained(self, instance_ids: Iterable[str]) -> set[str]:
        ids = list(instance_ids)
        nodes = self._nodes(ids)
        return {iid for iid in ids if iid not in nodes or not self._jobs_on(nodes[iid].name)}

    def undrain(self, instance_ids: Iterable[str]) -> None:
        names = sorted({n.name for n in self._nodes(instance_ids).values()})
        if names:
            self._run("scontrol", "update", f"NodeName={','.join(names)}", "State=RESUME", check=False)

    def admit(self, instance_ids: Iterable[str]) -> None:
        held = sorted({n.name for n in self._nodes(instance_ids).values()
                       if "DRAIN" in n.state.upper() and n.reason.startswith(UNVERIFIED_REASON)})
        if held:
            self._run("scontrol", "update", f"NodeName={','.join(held)}", "State=RESUME")

    def ready(self, instance_ids: Iterable[str]) -> set[str]:
        nodes = self._nodes(instance_ids)
        return {iid for iid, node in nodes.items() if not any(flag in node.state.upper() for flag in UNAVAILABLE)}

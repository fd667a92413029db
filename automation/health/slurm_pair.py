"""The peer all-reduce on Slurm: one ``srun`` over the new node and its peer.

The new node is held by its ``gpufleet-unverified-<node>`` reservation, and a job of a reservation
runs only on the reservation's nodes: for the pair's one step the peer joins that reservation
(``scontrol update reservation Nodes=<new>,<peer>``), and leaves it whatever happens. The step
runs one task per node, exclusive; each task starts the bundle's entry point with ``--nnodes 2``,
node rank 0 on the new node, whose NodeAddr hosts the rendezvous; ``--label`` tells the two
reports apart and the new node's is returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gpufleet.automation.health.peer import PeerCandidate
from gpufleet.lifecycle.health.results import NodeReport, Tier
from gpufleet.lifecycle.slurm.hold import hold_reservation

UNHEALTHY = {"DRAIN", "DRAINING", "DRAINED", "DOWN", "FAIL", "FAILING", "NOT_RESPONDING", "FUTURE",
             "POWERED_DOWN", "POWERING_DOWN", "POWERING_UP", "REBOOT_REQUESTED", "REBOOT_ISSUED", "MAINT"}
"""Node state words (base or flag) that rule a node out as the known-good peer."""
RANK_SCRIPT = ('r=1; [ "$SLURMD_NODENAME" = "$1" ] && r=0; shift; '
               'exec "$@" --node "$SLURMD_NODENAME" --node-rank "$r"')
"""Runs on each task: node rank 0 on the new node, 1 on the peer."""
LABEL = re.compile(r"^\s*\d+:\s?")


def candidates(nodes: Sequence[Any], reservations: set[str]) -> list[PeerCandidate]:
    """Every Slurm node as a peer candidate: pool = its first partition, group = its first feature
    (the node group), admitted = no hold reservation, healthy = none of ``UNHEALTHY`` in its state,
    idle = its base state IDLE."""
    out = []
    for node in nodes:
        words = set(re.split(r"[+*~#!%$@^-]", node.state.upper())) - {""}
        out.append(PeerCandidate(name=node.name, pool=node.partitions[0] if node.partitions else "",
                                 group=node.features[0] if node.features else "",
                                 admitted=hold_reservation(node.name) not in reservations,
                                 healthy=not words & UNHEALTHY, idle=node.state.upper().startswith("IDLE"),
                                 aliases=frozenset(node.instance_ids)))
    return out


def srun_argv(probe: Any, new: Any, peer: Any, reservation: str | None, entry: Sequence[str]) -> list[str]:
    """``srun`` arguments of the pair's step (``probe``: the SlurmProbe, its paths and limits)."""
    argv = [f"--job-name={probe.JOB_NAME}-pair", f"--nodelist={new.name},{peer.name}", "--nodes=2",
            "--ntasks-per-node=1", "--exclusive", "--export=NONE", "--label", f"--immediate={probe.immediate_s}",
            f"--time={max(1, int(probe.timeout_s // 60))}"]
    if reservation:
        argv.append(f"--reservation={reservation}")
    if new.partitions:
        argv.append(f"--partition={new.partitions[0]}")
    if new.gres:
        argv.append(f"--gres={new.gres}")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": probe.install_dir,
           **probe.node_env}
    return [*argv, "/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", RANK_SCRIPT,
            "gpufleet-pair", new.name, probe.python, *entry]


def newcomer_report(stdout: str, name: str) -> dict | None:
    """The JSON report the new node's task printed (``--label``-prefixed lines of both tasks)."""
    for line in stdout.splitlines():
        body = LABEL.sub("", line, count=1)
        if not body.startswith("{"):
            continue
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("node") == name:
            return doc
    return None


def run_pair(probe: Any, node: str, peer: str, entry: Sequence[str]) -> NodeReport:
    """The new node's report of the pair's all-reduce (a FAIL ``probe`` result when it could not run)."""
    from gpufleet.automation.health.probe import probe_failure
    from gpufleet.infra.errors import SlurmError

    tiers = (Tier.DEEP,)
    slurm = probe.slurm
    try:
        nodes = slurm.nodes()
        new = next((n for n in nodes if node == n.name or node in n.instance_ids), None)
        other = next((n for n in nodes if peer == n.name or peer in n.instance_ids), None)
        if new is None or other is None:
            return probe_failure(node, tiers, f"no Slurm node for {node if new is None else peer}")
        if not new.addr:
            return probe_failure(node, tiers, f"{new.name} has no NodeAddr to host the rendezvous")
        held = hold_reservation(new.name)
        reservation = held if held in {r["ReservationName"] for r in slurm.reservations()} else None
        if reservation:
            slurm.run("scontrol", "update", f"ReservationName={reservation}", f"Nodes={new.name},{other.name}")
        try:
            done = slurm.srun(*srun_argv(probe, new, other, reservation, [*entry, "--master-addr", new.addr]),
                              timeout_s=probe.timeout_s + 120)
        finally:
            if reservation:
                slurm.run("scontrol", "update", f"ReservationName={reservation}", f"Nodes={new.name}")
    except SlurmError as err:
        return probe_failure(node, tiers, f"srun with {peer}: {err.message}")
    doc = newcomer_report(done.stdout, new.name)
    if doc is None:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        return probe_failure(node, tiers, f"srun on {new.name},{other.name} exited {done.returncode}: {last}")
    try:
        report = NodeReport.from_dict(doc)
    except (KeyError, TypeError, ValueError) as err:
        return probe_failure(node, tiers, f"srun on {new.name},{other.name}: unreadable report: {err}")
    from dataclasses import replace

    return replace(report, node=node)

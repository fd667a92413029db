"""The Slurm adapter against a real local Slurm (slurmctld + slurmd from Debian's packages)."""

from __future__ import annotations

import time

import pytest

from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator
from gpufleet.automation.slurm_client import SlurmClient, parse_show_node

pytestmark = pytest.mark.slurm

I1, I2, I3 = "i-0000000000000001", "i-0000000000000002", "i-0000000000000003"

CHECKPOINTING_JOB = """#!/bin/bash
trap 'touch {out}/checkpointed-$SLURM_JOB_ID; exit 0' USR1
scontrol update JobId=$SLURM_JOB_ID Comment=checkpoint=1700000000
for i in $(seq 600); do sleep 0.1; done
"""
STUBBORN_JOB = """#!/bin/bash
trap '' USR1
for i in $(seq 600); do sleep 0.1; done
"""


def test_parse_show_node_finds_instance_ids_in_name_comment_or_extra():
    text = ("NodeName=node1 Arch=x86_64 CoresPerSocket=1 State=IDLE+DRAIN Comment=instance-id=i-0abc12345678 ThreadsPerCore=1\n"
            "NodeName=i-0def12345678 State=ALLOCATED Extra=(null)\n"
            "NodeName=node3 State=IDLE Comment=(null)\n")
    nodes = parse_show_node(text)
    assert [(n.name, n.state, set(n.instance_ids)) for n in nodes] == [
        ("node1", "IDLE+DRAIN", {"i-0abc12345678"}), ("i-0def12345678", "ALLOCATED", {"i-0def12345678"}),
        ("node3", "IDLE", set())]


def test_checkpoint_drain_requeue_and_undrain(local_slurm, tmp_path):
    slurm = local_slurm
    for node, iid in (("node1", I1), ("node2", I2), ("node3", I3)):
        slurm.run("scontrol", "update", f"NodeName={node}", f"Comment=instance-id={iid}")
    tmp_path.chmod(0o777)
    polite = slurm.sbatch(CHECKPOINTING_JOB.format(out=tmp_path), "-w", "node1")
    stubborn = slurm.sbatch(STUBBORN_JOB, "-w", "node2", "--requeue")
    slurm.wait_until(lambda: slurm.job(polite).state == "RUNNING" and slurm.job(stubborn).state == "RUNNING",
                     timeout=30, what="both jobs running")
    slurm.wait_until(lambda: "checkpoint=" in slurm.run("squeue", "-h", "-j", str(polite), "-o", "%k").stdout,
                     timeout=30, what="checkpoint published")
    adapter = SlurmOrchestrator(SlurmClient(env=slurm.env))

    work = {w.instance_id: w for w in adapter.work([I1, I2, I3, "i-0000000000000009"])}
    assert (work[I1].busy, work[I1].last_checkpoint) == (True, 1700000000.0)
    assert (work[I2].busy, work[I2].last_checkpoint) == (True, None)
    assert not work[I3].busy and not work["i-0000000000000009"].known

    adapter.request_checkpoint([I1, I2], "gpufleet rebalance rb-test")
    assert "DRAIN" in slurm.node("node1").state and slurm.node("node1").reason.startswith("gpufleet")
    slurm.wait_until(lambda: I1 in adapter.drained([I1, I2]), timeout=30, what="node1 drained by checkpoint")
    assert (tmp_path / f"checkpointed-{polite}").exists()
    time.sleep(1.0)
    assert I2 not in adapter.drained([I1, I2])  # the job ignored the signal: still there

    adapter.evict([I2])  # requeue it
    slurm.wait_until(lambda: adapter.drained([I1, I2]) == {I1, I2}, timeout=30, what="node2 drained by requeue")
    slurm.wait_until(lambda: slurm.job(stubborn).restarts >= 1, timeout=30, what="job requeued")
    assert adapter.ready([I1, I2, I3]) == {I3}

    adapter.undrain([I1, I2])
    slurm.wait_until(lambda: adapter.ready([I1, I2, I3]) >= {I1, I3}, timeout=30, what="nodes back")

    # a new node held by its bootstrap until the health gate passes; admit lifts only that hold
    slurm.run("scontrol", "update", "NodeName=node3", "State=DRAIN", "Reason=gpufleet unverified: gate pending")
    assert I3 not in adapter.ready([I3])
    adapter.admit([I1, I3])
    slurm.wait_until(lambda: I3 in adapter.ready([I3]), timeout=30, what="node3 admitted")

"""The sandbox's training nodes on the real local Slurm, and the two jobs a checkpoint grace is tested
with: one that saves on USR1 and requeues itself (as the reference runtime's rank 0 does), one that
only logs the signal. Shared by the rebalancer's and `health --replace`'s grace tests."""

from __future__ import annotations

from pathlib import Path

from tests.automation.stand_in import real_orchestrators

SELF_REQUEUE = """#!/bin/bash
# Saves on USR1, then requeues its own job (the reference runtime's rank 0 does, lifecycle/runtime/signals.py).
trap 'sleep {save}; touch {out}/saved-$SLURM_JOB_ID; scontrol requeue $SLURM_JOB_ID' USR1
scontrol update JobId=$SLURM_JOB_ID Comment="checkpoint={stamp} checkpoint_s={save}"
for _ in $(seq 1200); do sleep 0.1 & wait $!; done
"""
ONLY_LOGS = """#!/bin/bash
# Logs the signal and goes on: the drain requeues it once the grace is over.
trap 'touch {out}/told-$SLURM_JOB_ID' USR1
scontrol update JobId=$SLURM_JOB_ID Comment="checkpoint={stamp} checkpoint_s={save}"
for _ in $(seq 1200); do sleep 0.1 & wait $!; done
"""


def on_local_slurm(make_local_slurm, inventory_path: Path, instance_ids: list[str], monkeypatch, tmp_path: Path):
    """A local Slurm with one node per training instance (its id in the node's Comment, as the node
    bootstrap records it) and the inventory that points the training groups at it (the inference
    groups at ``none``: no Kubernetes API here). Returns (cluster, inventory path)."""
    slurm = make_local_slurm(num_nodes=len(instance_ids))
    path = real_orchestrators(inventory_path, tmp_path / "inventory.json", without="inference")
    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
    for iid, node in zip(sorted(instance_ids), slurm.node_names, strict=True):
        slurm.run("scontrol", "update", f"NodeName={node}", f"Comment=instance-id={iid}")
    return slurm, path


def marks(tmp_path: Path) -> Path:
    """Where the jobs leave ``saved-<job>`` and ``told-<job>`` (written by the job's user)."""
    out = tmp_path / "marks"
    out.mkdir(mode=0o777)
    return out


def submit(slurm, node: str, script: str, out: Path, stamp: int, save_s: float) -> int:
    """Start ``script`` on ``node`` (requeueable), publishing ``checkpoint=<stamp> checkpoint_s=<save_s>``."""
    return slurm.sbatch(script.format(out=out, stamp=stamp, save=f"{save_s:g}"), "-w", node, "--requeue")


def wait_published(slurm, jobs) -> None:
    """Until every job runs and has published its checkpoint time."""
    slurm.wait_until(lambda: all("checkpoint_s=" in slurm.run("squeue", "-h", "-j", str(j), "-o", "%k").stdout
                                 for j in jobs), timeout=60, what="every job running with a checkpoint")

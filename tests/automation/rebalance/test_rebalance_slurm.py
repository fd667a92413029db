"""A move whose source is a real local Slurm cluster: the victims lose the least work and are
drained through Slurm before their instances are released (sandbox AWS + real slurmctld/slurmd)."""

from __future__ import annotations

import pytest

from gpufleet.automation.health.gate import AcceptAllGate
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import MoveState

pytestmark = [pytest.mark.emulator, pytest.mark.slurm]

JOB = """#!/bin/bash
trap 'touch {out}/checkpointed-$SLURM_JOB_ID; exit 0' USR1
scontrol update JobId=$SLURM_JOB_ID Comment=checkpoint={stamp}
for i in $(seq 1200); do sleep 0.1; done
"""


def test_training_nodes_checkpoint_and_drain_through_slurm(fleet, slurm_fleet):
    slurm, node_of, out = slurm_fleet.slurm, slurm_fleet.node_of, slurm_fleet.marks
    # node1 idle; node2..node5 busy, node4's work checkpointed most recently
    stamps = {"node2": 1700000100, "node3": 1700000200, "node4": 1700000400, "node5": 1700000300}
    jobs = {node: slurm.sbatch(JOB.format(out=out, stamp=stamp), "-w", node) for node, stamp in stamps.items()}
    slurm.wait_until(lambda: all("checkpoint=" in slurm.run("squeue", "-h", "-j", str(j), "-o", "%k").stdout
                                 for j in jobs.values()), timeout=60, what="every job running with a checkpoint")

    inventory = load_inventory(slurm_fleet.inventory_path)
    journal = Journal(fleet.client("platform", "dynamodb"), inventory.journal_table)
    executor = Executor(inventory, fleet.client, journal, lambda kind, stack: for_group(kind, stack=stack),
                        AcceptAllGate(), limits=Limits(poll_s=0.1, checkpoint_grace_s=30, acquire_timeout_s=30))
    plan = executor.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))
    assert [node_of[v.instance_id] for v in plan.victims] == ["node1", "node4"]
    assert [v.reason for v in plan.victims] == ["idle", "busy, checkpointed at 1700000400"]

    op = executor.run(executor.start(plan, op_id="rb-slurm"))
    assert op.state is MoveState.DONE
    assert (out / f"checkpointed-{jobs['node4']}").exists()  # the work checkpointed on the signal
    for node in ("node1", "node4"):
        assert "DRAIN" in slurm.node(node).state
        assert "Reason=gpufleet rebalance rb-slurm" in slurm.run("scontrol", "-o", "show", "node", node).stdout
    for node in ("node2", "node3", "node5"):  # the others kept their work
        assert slurm.job(jobs[node]).state == "RUNNING"
    assert fleet.desired()["train-h100"] == 3
    assert set(plan.victims[i].instance_id for i in range(2)).isdisjoint(fleet.running()["training"])
    fleet.check_invariant()

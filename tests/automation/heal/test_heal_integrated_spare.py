"""The hot-spare swap end to end in the integrated sandbox (tests/heal_sandbox.py): the pool says
``spares: 1``, so the healer launches a second instance, gates its node and holds it as the spare;
the job's node, its spare and later the faulty node's replacement are real slurmd nodes side by
side, each on its own loopback address.

A GPU of the job's node loses its row remapping -> its health hook drains it -> the healer admits
the held spare and requeues the job, which starts on the spare and resumes from its checkpoint
without waiting for a boot -> the faulty instance is terminated (desired capacity kept) -> its
replacement boots, registers held, is gated and held as the new spare.
"""

from __future__ import annotations

import pytest

from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.heal_sandbox import integrated_sandbox

pytest.importorskip("torch")

pytestmark = [pytest.mark.slurm, pytest.mark.torch, pytest.mark.timeout(900)]

BOOT_DELAY_S = 15.0
"""Long enough that the requeued job could only train again this soon on a node already up."""
CKPT_EVERY = 5


def test_a_fault_swaps_the_held_spare_in_and_the_replacement_becomes_the_spare(sandbox, make_local_slurm):
    group = None
    with integrated_sandbox(sandbox, make_local_slurm, prefix="gs", boot_delay_s=BOOT_DELAY_S) as isb:
        isb.start(timeout_s=240, spares=1)
        group = isb.ref.group.name
        (spare,) = isb.spares_held()
        spare_iid = spare.removeprefix(f"{group}-")
        first = isb.first_node.removeprefix(f"{group}-")
        assert sorted(isb.in_service()) == sorted([first, spare_iid])
        desired = isb.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[isb.ref.group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"]
        assert desired == 2
        launches = [op for op in heal_ops(isb.journal) if op.body["action"] == "spare"]
        assert [op.state for op in launches] == [MoveState.DONE]

        isb.launch_job(ckpt_every=CKPT_EVERY, step_sleep=0.2)
        assert isb.running_node() == isb.first_node  # the spare is held: nothing lands there
        with isb.healer() as loop:
            trial = isb.fault_and_recover(timeout_s=300)
            timeline = "\n".join(f"{t:7.1f}s {what}" for t, what in trial.timeline)
            assert trial.first_step_after_s is not None, f"the job never trained again:\n{timeline}"
            # The replacement of the faulty node goes on in the background, then it is the spare.
            (new_spare,) = isb.wait_spares(1, 300)
            swap = next(op for op in heal_ops(isb.journal) if op.body["action"] == "replace")
            isb.harness.wait_until(lambda: (o := isb.journal.load(swap.op_id)) and o.state is MoveState.DONE,
                                   timeout=60, what="the swap DONE")
        assert not loop.errors, loop.errors
        isb.refresh_timeline(trial)
        timeline = "\n".join(f"{t:7.1f}s {what}" for t, what in trial.timeline)
        print(timeline)

        # The held spare was swapped in: the requeued job runs there, resumed from a checkpoint.
        assert trial.swapped_in == spare and trial.running_on == spare, timeline
        assert isb.running_node() == spare
        assert trial.resumed_from is not None and trial.resumed_from >= CKPT_EVERY
        assert 0 <= trial.work_lost_steps <= CKPT_EVERY, timeline
        # Slurm ran it again before the replacement's slurmd was even up: no boot in between.
        (newcomer,) = trial.replacement.split(",")
        up = isb.node_of(newcomer)
        assert up is not None and up["up_at"] is not None and trial.running_again_s is not None
        assert trial.fault_at + trial.running_again_s < up["up_at"], timeline

        # The faulty instance was replaced in its group (desired kept); its node left the controller.
        op = isb.journal.load(swap.op_id)
        assert op.body["instance_id"] == first and op.body["swap_with"] == spare
        assert op.body["replaced_by"] == [newcomer]
        intents = [e.step for e in isb.journal.events(op.op_id) if e.event_type == "intent"]
        assert intents == ["checkpoint", "admit_spare", "terminate"]
        assert sorted(isb.in_service()) == sorted([spare_iid, newcomer])
        group_doc = isb.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[isb.ref.group.asg_name])
        assert group_doc["AutoScalingGroups"][0]["DesiredCapacity"] == desired
        assert len([r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]) == 1
        assert isb.node_of(first)["state"] == "gone"
        assert isb.first_node not in {n.name for n in isb.slurm.nodes()}

        # The newcomer passed its gate through its hold reservation and is held as the new spare.
        assert new_spare == f"{group}-{newcomer}"
        assert hold_reservation(new_spare) not in isb.harness.run("scontrol", "show", "reservation").stdout
        gate_jobs = [ln for ln in isb.harness.run("scontrol", "-o", "show", "job").stdout.splitlines()
                     if "JobName=gpufleet-health-gate" in ln and f"NodeList={new_spare} " in ln]
        assert gate_jobs and all("JobState=COMPLETED " in g and "ExitCode=0:0 " in g for g in gate_jobs), gate_jobs
        # Three slurmd at once on one SlurmdPort: the newcomer registered while the spare (now
        # serving) was up, and the faulty node had been up alongside the spare.
        nodes = {n["instance_id"]: n for n in isb.nodes_state()}
        assert nodes[spare_iid]["state"] == "up" and nodes[spare_iid]["up_at"] < nodes[first]["gone_at"]
        assert nodes[newcomer]["state"] == "up" and nodes[spare_iid]["up_at"] < nodes[newcomer]["up_at"]
        assert len({n["addr"] for n in nodes.values()}) == 3
        assert sandbox.client.iam()["denials"] == []

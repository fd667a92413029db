"""The healer's whole loop once, end to end, in the integrated sandbox (tests/heal_sandbox.py): a real
local Slurm whose nodes are the emulated Auto Scaling group's instances, each a real slurmd started
when its instance is InService (held until its gate passes) and killed when it is terminated.

A GPU of the job's node loses its row remapping (device fixture) -> the node's health hook drains
it -> the healer (heal_pass in a loop) tells the job, requeues it, terminates the instance without
lowering desired capacity -> the group launches a new instance -> its slurmd registers held ->
the gate runs on it through its hold reservation -> admitted -> the reference job resumes from its
checkpoint there. The healer gives the job its grace after the checkpoint signal (heal/grace.py):
the job saves on that USR1 and requeues itself, so it resumes from the step it stopped at.

Times are bench/heal.py's business (docs/heal.md); the test bounds the loop (420 s) and prints
its timeline.
"""

from __future__ import annotations

import signal

import pytest

from gpufleet.automation.heal.grace import DEFAULT_S, MAX_S, MIN_S
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.heal_sandbox import integrated_sandbox

pytest.importorskip("torch")

pytestmark = [pytest.mark.slurm, pytest.mark.torch, pytest.mark.timeout(600)]

BOOT_DELAY_S = 3.0
CKPT_EVERY = 5


def test_a_faulty_gpu_is_replaced_and_the_job_resumes_on_the_newcomer(sandbox, make_local_slurm):
    with integrated_sandbox(sandbox, make_local_slurm, prefix="gh", boot_delay_s=BOOT_DELAY_S) as isb:
        isb.start()
        desired = isb.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[isb.ref.group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"]
        (first,) = isb.in_service()
        isb.launch_job(ckpt_every=CKPT_EVERY, step_sleep=0.2)
        assert isb.running_node() == f"{isb.ref.group.name}-{first}"
        with isb.healer() as loop:
            trial = isb.fault_and_recover(timeout_s=420)
        assert not loop.errors, loop.errors
        timeline = "\n".join(f"{t:7.1f}s {what}" for t, what in trial.timeline)
        print(timeline)
        assert trial.first_step_after_s is not None, f"the job never trained again:\n{timeline}"

        # The node was drained by its own hook for the fault, and replaced (one operation, DONE).
        assert trial.drained_s is not None
        (op,) = heal_ops(isb.journal)
        assert op.state is MoveState.DONE and op.body["instance_id"] == first, (op.state, timeline)
        assert op.body["signals"] == ["row_remap_failure"]
        (newcomer,) = op.body["replaced_by"]
        assert isb.in_service() == [newcomer]
        group = isb.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[isb.ref.group.asg_name])["AutoScalingGroups"][0]
        assert group["DesiredCapacity"] == desired
        terminations = [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
        assert len(terminations) == 1

        # The old node's slurmd died with its instance and left the controller; the new one is
        # admitted (its hold gone) and the job runs there, resumed from a checkpoint.
        old = isb.node_of(first)
        assert old is not None and old["state"] == "gone"
        assert f"{isb.ref.group.name}-{first}" not in {n.name for n in isb.slurm.nodes()}
        assert isb.running_node() == f"{isb.ref.group.name}-{newcomer}"
        assert hold_reservation(f"{isb.ref.group.name}-{newcomer}") not in isb.harness.run(
            "scontrol", "show", "reservation").stdout
        states = [e.state for e in isb.journal.events(op.op_id) if e.event_type == "transition"]
        assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY",
                          "JOINED", "DONE"]
        # The gate's srun ran on the newcomer (through its hold reservation: nothing else could
        # start there before the admission) and passed.
        gate_jobs = [ln for ln in isb.harness.run("scontrol", "-o", "show", "job").stdout.splitlines()
                     if "JobName=gpufleet-health-gate" in ln and f"NodeList={isb.ref.group.name}-{newcomer} " in ln]
        assert gate_jobs and all("JobState=COMPLETED " in g and "ExitCode=0:0 " in g for g in gate_jobs), gate_jobs
        assert trial.resumed_from is not None and trial.resumed_from >= CKPT_EVERY
        # The grace: the job saved on the checkpoint signal itself (USR1, not the SIGTERM of a
        # requeue) and requeued itself; the healer requeued nothing. It resumed from the step it
        # stopped at: no step lost.
        (stop,) = [e for e in isb.job_events() if e["event_type"] == "stopping" and e["ts"] > trial.fault_at]
        assert stop["signal"] == signal.SIGUSR1 and stop["slurm_requeued"] == str(isb.job_id), stop
        events = isb.journal.events(op.op_id)
        told = next(e for e in events if e.event_type == "result" and e.step == "checkpoint")
        drained = next(e for e in events if e.event_type == "transition" and e.state == "DRAINED")
        assert told.detail["signalled"] == [str(isb.job_id)]
        assert drained.detail["left_on_their_own"] == [str(isb.job_id)] and drained.detail["requeued"] == []
        # The grace came from the checkpoint time the job published in its comment.
        comment = isb.harness.run("squeue", "-h", "-j", str(isb.job_id), "-o", "%k").stdout
        assert "checkpoint_s=" in comment, comment
        assert MIN_S <= told.detail["grace_s"] <= MAX_S and told.detail["grace_s"] != DEFAULT_S, told.detail
        assert trial.resumed_from == stop["step"] == trial.last_step_before, timeline
        assert trial.work_lost_steps == 0, timeline
        assert sandbox.client.iam()["denials"] == []

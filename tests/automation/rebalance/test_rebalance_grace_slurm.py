"""The rebalancer's drain on the real local Slurm gives the victims' jobs the healer's grace
(automation/heal/grace.py, from the checkpoint time they publish): a job that checkpoints and
requeues itself on USR1 leaves on its own, a job that only logs the signal is requeued once the
grace is over and not before; both are journaled. In step mode each pass records the wait and
returns, and a later pass continues."""

from __future__ import annotations

import time

import pytest

from gpufleet.automation.health.gate import AcceptAllGate
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from tests.automation.slurm_checkpoint_jobs import (
    ONLY_LOGS,
    SELF_REQUEUE,
    submit,
    wait_published,
)

pytestmark = [pytest.mark.emulator, pytest.mark.slurm]

SAVE_S = 1.0
"""What each job publishes as its checkpoint time: the grace is 3 x 1 + 5 = 8 s, raised to 10."""
GRACE_S = 10.0


def started(slurm_fleet):
    slurm, out = slurm_fleet.slurm, slurm_fleet.marks
    # The two newest checkpoints are the victims: node4's job requeues itself, node5's only logs.
    stamps = {"node1": 1700000100, "node2": 1700000200, "node3": 1700000300, "node4": 1700000500,
              "node5": 1700000400}
    jobs = {node: submit(slurm, node, SELF_REQUEUE if node == "node4" else ONLY_LOGS, out, stamp, SAVE_S)
            for node, stamp in stamps.items()}
    wait_published(slurm, jobs.values())
    return slurm, load_inventory(slurm_fleet.inventory_path), jobs, out


def executor(fleet, inventory, owner):
    journal = Journal(fleet.client("platform", "dynamodb"), inventory.journal_table, owner=owner)
    return Executor(inventory, fleet.client, journal, lambda kind, stack: for_group(kind, stack=stack),
                    AcceptAllGate(), limits=Limits(poll_s=0.1, acquire_timeout_s=60, drain_timeout_s=60))


@pytest.mark.parametrize("stepping", [False, True], ids=["run", "step"])
def test_the_drain_waits_the_jobs_grace_and_requeues_only_what_stayed(fleet, slurm_fleet, stepping):
    slurm, inventory, jobs, out = started(slurm_fleet)
    ex = executor(fleet, inventory, "pass-0")
    plan = ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))
    assert [v.reason for v in plan.victims] == ["busy, checkpointed at 1700000500", "busy, checkpointed at 1700000400"]
    op = ex.start(plan, op_id="rb-grace")
    if not stepping:
        op = ex.run(op)
    else:
        longest, n = 0.0, 0
        for n in range(1, 121):  # bounded: the move needs a few passes beyond the grace
            ex = executor(fleet, inventory, f"pass-{n}")
            t0 = time.monotonic()
            op = ex.step(ex.journal.load("rb-grace"))
            longest = max(longest, time.monotonic() - t0)
            if op.state in TERMINAL:
                break
            time.sleep(1.0)
        assert longest < 60, f"a pass took {longest:.1f} s"
        waits = [e for e in ex.journal.events("rb-grace") if e.event_type == "wait"
                 and e.detail["for"] == "work to checkpoint and leave"]
        assert len(waits) >= 2 and len({e.detail["since"] for e in waits}) == 1, \
            "the grace's wait is journaled by each pass, its start once"
    assert op.state is MoveState.DONE, op.state

    events = ex.journal.events("rb-grace")
    told = next(e for e in events if e.event_type == "result" and e.step == "grace")
    assert told.detail == {"signalled": [str(jobs["node4"]), str(jobs["node5"])], "grace_s": GRACE_S}
    over = next(e for e in events if e.event_type == "result" and e.step == "grace_over")
    assert over.detail == {"left_on_their_own": [str(jobs["node4"])], "requeued": [str(jobs["node5"])]}
    requeue = next(e for e in events if e.event_type == "intent" and e.step == "drain")
    # The job that stayed was requeued only once its grace was over: it had the grace to save in.
    assert (requeue.at_ns - told.at_ns) / 1e9 >= GRACE_S
    drained = next(e for e in events if e.event_type == "transition" and e.state == "DRAINED")
    assert drained.detail["left_on_their_own"] == [str(jobs["node4"])]
    assert drained.detail["requeued"] == [str(jobs["node5"])]

    assert (out / f"saved-{jobs['node4']}").exists() and (out / f"told-{jobs['node5']}").exists()
    assert slurm.job(jobs["node4"]).restarts >= 1 and slurm.job(jobs["node5"]).restarts >= 1
    for node in ("node1", "node2", "node3"):  # the others kept their work
        assert slurm.job(jobs[node]).state == "RUNNING"
    fleet.check_invariant()

"""Operations that overlap on one pool, in-process against the sandbox: a second planner, a cancel
beside a live move, health --replace during a move. Each docstring says what the test caught
before the pool lease (owner + fencing token) and the plan's re-validation after it is taken.
(A paused owner, SIGSTOP/SIGCONT of a real CLI process: test_rebalance_faults.py.)"""

from __future__ import annotations

import os
import threading

import pytest

from gpufleet.automation.health.gate import GateVerdict
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.health.replace import HealthArgs, run_health
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.errors import ConflictError
from gpufleet.lifecycle.health.results import Tier
from tests.automation.rebalance.test_rebalance_engine import SERVE, TRAIN, executor
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = pytest.mark.emulator

ONE = MoveRequest(from_role="training", to_role="inference", nodes=1)


class HeldGate:
    """A health gate that holds the move in ACQUIRED until the test lets it go."""

    def __init__(self) -> None:
        self.entered, self.go = threading.Event(), threading.Event()

    def check(self, stack, instance_ids):
        self.entered.set()
        assert self.go.wait(120), "the test never let the gate go"
        return GateVerdict(passed=list(instance_ids))


def in_thread(fn):
    out: dict = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["error"] = err

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def test_a_second_planner_is_refused_when_its_plan_went_stale(fleet):
    """Caught: a move planned before another one finished ran on its stale plan and reported DONE
    having moved nothing (its destination was already at its target)."""
    first, second = executor(fleet, owner="host-a:1:1"), executor(fleet, owner="host-b:2:2")
    early, late = first.plan(ONE), second.plan(ONE)
    assert first.run(first.start(early)).state is MoveState.DONE
    with pytest.raises(ConflictError, match="went stale: .*desired is 4, planned on 5"):
        second.run(second.start(late, op_id="rb-stale"))
    assert second.journal.load("rb-stale").state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 4 and fleet.desired()[SERVE] == 3  # the first move only
    fleet.check_invariant()
    assert not second.leases.held()


def test_cancel_while_the_owner_is_alive_is_refused_and_the_move_completes(fleet):
    """Caught: ``--cancel OP`` took the lock because it named the same operation; both processes
    acted and the pool ended at 9 desired for 8 reserved."""
    gate = HeldGate()
    owner = executor(fleet, gate=gate, owner="host-a:1:1")
    op = owner.start(owner.plan(ONE), op_id="rb-live")
    thread, out = in_thread(lambda: owner.run(op))
    assert gate.entered.wait(120), out
    canceller = executor(fleet, owner="host-b:2:2")
    try:
        with pytest.raises(ConflictError, match="leased by rebalance rb-live .*host-a:1:1"):
            canceller.cancel("rb-live")
        assert canceller.journal.load("rb-live").state is MoveState.ACQUIRED  # the cancel wrote nothing
    finally:
        gate.go.set()
        thread.join(120)
    assert out.get("value") is not None and out["value"].state is MoveState.DONE, out
    assert fleet.desired()[TRAIN] == 4 and fleet.desired()[SERVE] == 3
    fleet.check_invariant()
    events = [e for e in owner.journal.events("rb-live") if e.event_type == "transition"]
    assert [e.state for e in events][-1] == "DONE" and "ROLLING_BACK" not in [e.state for e in events]


def test_replace_during_a_move_is_refused_until_the_move_ends(fleet, tmp_path):
    """Caught: health --replace took no lock; during a move its replacement landed in the
    destination, the move's rollback terminated it with the new nodes and left the group short
    while the journal said ROLLED_BACK."""
    gate = HeldGate()
    owner = executor(fleet, gate=gate, owner="host-a:1:1")
    plan = owner.plan(ONE)
    thread, out = in_thread(lambda: owner.run(owner.start(plan, op_id="rb-busy")))
    assert gate.entered.wait(120), out
    dest = next(g for g in fleet.inventory.node_groups if g.group.name == SERVE)
    bad = fleet.live(dest)[0]
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp_path / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": dest.group.instance_type,
                            "PATH": f"{healthy}:{os.environ['PATH']}"},
                       env_by_node={bad: {"PATH": f"{dbe}:{os.environ['PATH']}"}}, timeout_s=120)
    before = len([r for r in fleet.control.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"])
    try:
        with pytest.raises(ConflictError, match="leased by rebalance rb-busy"):
            run_health(HealthArgs(pool=plan.pool, tiers=(Tier.QUICK,), replace=True, probe="local",
                                  inventory=fleet.inventory_path, replace_timeout_s=30, max_per_pool=8),
                       clients=fleet.client, probes=lambda stack: probe)
        terminated = [r for r in fleet.control.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
        assert len(terminated) == before, "the refused replacement terminated something"
    finally:
        gate.go.set()
        thread.join(120)
    assert out["value"].state is MoveState.DONE, out
    assert bad in fleet.live(dest)
    fleet.check_invariant()

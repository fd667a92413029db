"""Step mode against the sandbox: a move spread over passes, each pass a different process
(owner), the lease parked between them; a pass killed at any call resumes; a second pass at once
is refused."""

from __future__ import annotations

import pytest

from gpufleet.automation.health.gate import AcceptAllGate
from gpufleet.automation.orchestrators.base import NoOrchestrator
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from gpufleet.infra.errors import ConflictError

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
DEAD = "{host}:999999999:1"
"""An owner on this host whose process does not exist (a killed pass)."""


class Killed(BaseException):
    """The process died: nothing after it runs, no handler of the product sees it."""


class DyingClient:
    """The DynamoDB client of a process killed just before its ``calls``-th journal call."""

    def __init__(self, real, calls: int) -> None:
        self.real, self.left = real, calls

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.left -= 1
            if self.left < 0:
                raise Killed
            return attr(*args, **kwargs)

        return call


class SlowCluster(NoOrchestrator):
    """A workload manager that takes its time, the same one whichever process asks (like a real
    cluster): a checkpointing node leaves after ``drain_looks`` looks, an admitted node is ready
    after ``join_looks``. Only nodes asked to checkpoint ever drain; only admitted nodes get ready."""

    kind = "slow"

    def __init__(self, drain_looks: int = 3, join_looks: int = 3) -> None:
        self.drain_looks, self.join_looks = drain_looks, join_looks
        self.asked: dict[str, int] = {}
        self.admitted: dict[str, int] = {}

    def request_checkpoint(self, instance_ids, reason):
        assert reason.startswith("gpufleet rebalance rb-")
        for i in instance_ids:
            self.asked.setdefault(i, 0)

    def drained(self, instance_ids):
        out = set()
        for i in instance_ids:
            if i in self.asked:
                self.asked[i] += 1
                if self.asked[i] > self.drain_looks:
                    out.add(i)
        return out

    def admit(self, instance_ids):
        for i in instance_ids:
            self.admitted.setdefault(i, 0)

    def ready(self, instance_ids):
        out = set()
        for i in instance_ids:
            if i in self.admitted:
                self.admitted[i] += 1
                if self.admitted[i] > self.join_looks:
                    out.add(i)
        return out


@pytest.fixture
def cluster():
    return SlowCluster()


def stepper(fleet, owner, cluster, ddb=None, **limits):
    journal = Journal(ddb or fleet.client("platform", "dynamodb"), fleet.inventory.journal_table, owner=owner)
    return Executor(fleet.inventory, fleet.client, journal, lambda kind, stack: cluster, AcceptAllGate(),
                    limits=Limits(poll_s=0.05, acquire_timeout_s=60, **limits))


def passes_until_done(fleet, op_id, cluster, first=0, most=200):
    """Passes by new owners (a pass a process, as a Lambda runs them) until the move ends."""
    for n in range(first, first + most):
        ex = stepper(fleet, f"pass-{n}", cluster)
        op = ex.step(ex.journal.load(op_id))
        if op.state in TERMINAL:
            return op, n - first + 1
    raise AssertionError(f"{op_id} not done after {most} passes")


def test_a_move_spans_passes_and_the_parked_lease_keeps_other_operations_off(fleet, cluster):
    ex = stepper(fleet, "pass-start", cluster)
    plan = ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))
    op = ex.step(ex.start(plan, op_id="rb-step"))
    assert op.state not in TERMINAL, "the victims cannot drain within the first look"
    waits = [e for e in ex.journal.events("rb-step") if e.event_type == "wait"]
    assert waits and waits[-1].detail["for"] == "work to checkpoint and leave"
    holder = ex.leases.holder(plan.pool)
    assert holder.op_id == "rb-step"
    # a manual rebalance (another operation) is refused while the move waits between passes
    other = stepper(fleet, "host-b:2:2", cluster)
    with pytest.raises(ConflictError, match="rb-step"):
        other.leases.acquire(plan.pool, "rb-manual")
    op, passes = passes_until_done(fleet, "rb-step", cluster)
    assert op.state is MoveState.DONE
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
    fleet.check_invariant()
    assert not ex.leases.held()
    tokens = [e.detail["token"] for e in ex.journal.events("rb-step") if e.event_type == "transition" and "token" in e.detail]
    assert tokens, "LOCKED journals its token"
    started = [e for e in ex.journal.events("rb-step") if e.event_type == "wait"]
    assert len({e.detail["since"] for e in started if "join" in e.detail["for"]}) == 1, \
        "a wait's start is journaled once and kept across passes"


def test_a_launch_failure_seen_in_a_later_pass_rolls_the_move_back_over_passes(fleet, cluster):
    ex = stepper(fleet, "pass-start", cluster)
    op = ex.step(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)), op_id="rb-late"))
    assert op.state not in TERMINAL
    # the launch of the move, in a later pass, fails for want of capacity (the rollback's own launch succeeds)
    fleet.control.inject_fault("autoscaling", "SetDesiredCapacity", "InsufficientInstanceCapacity", count=1)
    op, _ = passes_until_done(fleet, "rb-late", cluster)
    assert op.state is MoveState.ROLLED_BACK
    fleet.check_invariant()
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    assert "insufficient capacity" in op.body["progress"]["rollback_reason"]


@pytest.mark.parametrize("kill_at", [3, 9, 16])
def test_a_pass_killed_at_any_call_resumes(fleet, cluster, kill_at):
    """The first pass dies before its ``kill_at``-th journal call; the next passes (other
    processes; the dead one's lease is taken over at once, its owner proven gone) finish the move."""
    import socket

    dead = DEAD.format(host=socket.gethostname())
    ex = stepper(fleet, dead, cluster, ddb=DyingClient(fleet.client("platform", "dynamodb"), kill_at))
    plan = ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1))
    with pytest.raises(Killed):
        op = ex.start(plan, op_id=f"rb-kill-{kill_at}")
        for _ in range(50):
            op = ex.step(op)
    journal = stepper(fleet, "reader", cluster).journal
    if journal.load(f"rb-kill-{kill_at}") is None:
        pytest.fail("killed before the move was journaled: choose a later call")
    op, _ = passes_until_done(fleet, f"rb-kill-{kill_at}", cluster)
    assert op.state is MoveState.DONE
    assert fleet.desired()[TRAIN] == 4 and fleet.desired()[SERVE] == 3
    fleet.check_invariant()


def test_two_passes_at_once_never_both_act(fleet, cluster):
    ex = stepper(fleet, "pass-a", cluster)
    op = ex.step(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)), op_id="rb-two"))
    assert op.state not in TERMINAL
    a, b = stepper(fleet, "pass-b", cluster), stepper(fleet, "pass-c", cluster)
    # pass b takes the parked lease; pass c, at the same time, is refused and changes nothing
    pool = ex.leases.holder(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)).pool).pool
    b.leases.acquire(pool, "rb-two")
    before = ex.journal.load("rb-two")
    with pytest.raises(ConflictError, match="leased by"):
        a.step(before)
    assert ex.journal.load("rb-two").version == before.version, "the refused pass wrote nothing"
    # pass b acts and parks; then the next pass continues
    op = b.step(before)
    op, _ = passes_until_done(fleet, "rb-two", cluster)
    assert op.state is MoveState.DONE
    fleet.check_invariant()


def test_a_pass_whose_time_is_up_starts_no_step(fleet, cluster):
    ex = stepper(fleet, "pass-late", cluster, pass_s=0.0)
    op = ex.step(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=1)), op_id="rb-late2"))
    assert op.state is MoveState.PLANNED
    assert [e.detail["for"] for e in ex.journal.events("rb-late2") if e.event_type == "wait"] == [
        "the next pass (this one's time is up)"]
    assert fleet.desired()[TRAIN] == 5 and not ex.leases.held()
    op, _ = passes_until_done(fleet, "rb-late2", cluster)
    assert op.state is MoveState.DONE

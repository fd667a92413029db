"""Fault tolerance of `gpufleet rebalance`, end to end: the real CLI in a subprocess against the sandbox.

SIGKILL at every state boundary (observed from outside, in the journal table) then --resume;
server-side throttling, 5xx and insufficient capacity at every AWS call site the executor uses;
two moves at once; bad flags calling nothing. After each: the pool invariant holds and every
reserved slot is held by exactly one live node or free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gpufleet.automation.lease import Leases
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.state import FORWARD, TERMINAL, MoveState
from gpufleet.infra.errors import ConflictError

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
"""Node groups (fleet.desired() is keyed by node group)."""
START = {TRAIN: 5, SERVE: 2}
CALL_SITES = [  # every AWS operation the rebalance makes, by service
    ("sts", "AssumeRole"),
    ("autoscaling", "DescribeAutoScalingGroups"), ("autoscaling", "DescribeScalingActivities"),
    ("autoscaling", "TerminateInstanceInAutoScalingGroup"), ("autoscaling", "SetDesiredCapacity"),
    ("dynamodb", "TransactWriteItems"), ("dynamodb", "PutItem"), ("dynamodb", "GetItem"), ("dynamodb", "DeleteItem"),
]  # and ("dynamodb", "UpdateItem"): the lease heartbeat, every 40 s; see test_heartbeat_survives_faults


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "AWS_MAX_ATTEMPTS": "3", "COLUMNS": "200", **extra}


def start(fleet, *args: str, **env: str) -> subprocess.Popen:
    # --probe local: this host's health checks stand in for the emulated nodes' (0.4 s a node);
    # --resume/--cancel get none, so they must take the move's own from the journal
    probe = [] if {"--resume", "--cancel"} & set(args) else ["--probe", "local"]
    argv = [sys.executable, "-m", "gpufleet.automation", "rebalance", *probe, *args, "--inventory", str(fleet.inventory_path)]
    return subprocess.Popen(argv,
                            env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(fleet, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    proc = start(fleet, *args, **env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def journal(fleet) -> Journal:
    return Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)


def wait_for_op(j: Journal, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ops = j.list_ops()
        if ops:
            return ops[-1].op_id
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no operation appeared in the journal")


def kill_when(j: Journal, op_id: str, proc: subprocess.Popen, wanted: set[MoveState], timeout: float = 60) -> MoveState:
    """SIGKILL the process as soon as the operation is in one of ``wanted`` (or has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = j.load(op_id).state
        if state in wanted or state in TERMINAL or proc.poll() is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return j.load(op_id).state
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"{op_id} never reached {wanted}")


@pytest.mark.parametrize("source,dest", [("training", "inference"), ("inference", "training")])
def test_sigkill_at_every_state_boundary_then_resume(fleet, source, dest):
    j = journal(fleet)
    proc = start(fleet, "--from", source, "--to", dest, "--nodes", "2", "--yes")
    op_id = wait_for_op(j, proc)
    killed_in = []
    for target in FORWARD[1:-1]:  # LOCKED .. JOINED
        if j.load(op_id).state in TERMINAL:
            break
        if FORWARD.index(j.load(op_id).state) >= FORWARD.index(target):
            continue  # the last run got past this boundary before the kill landed
        killed_in.append(kill_when(j, op_id, proc, set(FORWARD[FORWARD.index(target):])))
        fleet.check_invariant()
        proc = start(fleet, "--resume", op_id)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert j.load(op_id).state is MoveState.DONE
    moved = 2 if source == "training" else -2
    assert fleet.desired() == {**fleet.desired(), TRAIN: START[TRAIN] - moved, SERVE: START[SERVE] + moved}
    fleet.check_invariant()
    assert not Leases(j).held()
    print(f"{source} -> {dest}: killed in {[str(s) for s in killed_in]}")
    assert len(killed_in) >= 3, f"kills landed in {killed_in}: the moves ran past the boundaries"


def test_ctrl_c_says_how_to_resume_or_cancel_and_cancel_rolls_back(fleet):
    j = journal(fleet)
    proc = start(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    op_id = wait_for_op(j, proc)
    deadline = time.monotonic() + 60
    while j.load(op_id).state is MoveState.PLANNED and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if j.load(op_id).state is MoveState.DONE:
        pytest.fail("the move finished before the interrupt landed")
    assert proc.returncode == 130, err
    assert f"gpufleet rebalance --resume {op_id}" in err and f"gpufleet rebalance --cancel {op_id}" in err
    fleet.check_invariant()
    cancelled = run(fleet, "--cancel", op_id)
    assert cancelled.returncode == 5 and "cancelled by the operator" in cancelled.stderr, cancelled.stderr
    assert j.load(op_id).state is MoveState.ROLLED_BACK and not Leases(j).held()
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()


def share_pool(fleet, accounts: list[str]) -> None:
    """Re-share the h100 reservation with exactly ``accounts`` (platform account, RAM)."""
    ec2, ram = fleet.client("platform", "ec2"), fleet.client("platform", "ram")
    arn = next(r["CapacityReservationArn"] for r in ec2.describe_capacity_reservations()["CapacityReservations"]
               if r["InstanceType"] == "p5.48xlarge")
    for share in ram.get_resource_shares(resourceOwner="SELF")["resourceShares"]:
        if share["status"] != "DELETED" and share["name"] == "gpufleet-h100-use1-az4":
            ram.delete_resource_share(resourceShareArn=share["resourceShareArn"])
    if accounts:
        ram.create_resource_share(name="gpufleet-h100-use1-az4", resourceArns=[arn], principals=accounts,
                                  allowExternalPrincipals=True)


def test_insufficient_capacity_rolls_back_and_a_stuck_rollback_resumes(fleet):
    j = journal(fleet)
    training, inference = (fleet.inventory.stacks[s].account_id for s in ("training", "inference"))
    share_pool(fleet, [training])  # inference can no longer launch into the reservation
    done = run(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    assert done.returncode == 5 and "rolled back" in done.stderr and "InsufficientInstanceCapacity" in done.stderr
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()

    share_pool(fleet, [])  # now the source cannot take its nodes back either
    stuck = run(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    assert stuck.returncode == 5 and "could not finish rolling back" in stuck.stderr
    op_id = [o for o in j.list_ops(in_flight_only=True)][0].op_id
    assert j.load(op_id).state is MoveState.ROLLING_BACK and f"--resume {op_id}" in stuck.stderr
    fleet.check_invariant()
    share_pool(fleet, [training, inference])
    resumed = run(fleet, "--resume", op_id)
    assert resumed.returncode == 5 and "was rolled back" in resumed.stderr
    assert j.load(op_id).state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()


def test_sigkill_while_rolling_back_then_resume(fleet):
    j = journal(fleet)
    share_pool(fleet, [fleet.inventory.stacks["training"].account_id])  # the move will hit ICE and roll back
    proc = start(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    op_id = wait_for_op(j, proc)
    assert kill_when(j, op_id, proc, {MoveState.ROLLING_BACK}) in {MoveState.ROLLING_BACK, MoveState.ROLLED_BACK}
    fleet.check_invariant()
    resumed = run(fleet, "--resume", op_id)
    assert resumed.returncode == 5 and j.load(op_id).state is MoveState.ROLLED_BACK, resumed.stderr
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()
    assert not Leases(j).held()


@pytest.mark.parametrize("error", ["Throttling", "InternalError"])
def test_a_transient_fault_at_every_call_site_is_absorbed(fleet, error):
    for service, action in CALL_SITES:
        fleet.control.inject_fault(service, action, error, count=1)
    done = run(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    assert done.returncode == 0, done.stderr
    # GetItem reads the journal on --resume only: resume the finished move to reach it
    again = run(fleet, "--resume", journal(fleet).list_ops()[-1].op_id)
    assert again.returncode == 0, again.stderr
    hit = {(r["service"], r["action"]) for r in fleet.control.requests() if r["error"]}
    assert hit == set(CALL_SITES), f"never faulted: {set(CALL_SITES) - hit}"
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
    fleet.check_invariant()


def test_insufficient_capacity_at_every_call_site(fleet):
    """Where it is an error (EC2-style 500) the SDK retries it; on Auto Scaling the call succeeds and
    the launch fails, which the executor sees in the scaling activities and rolls back."""
    for service, action in CALL_SITES:
        fleet.control.inject_fault(service, action, "InsufficientInstanceCapacity", count=1)
    done = run(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    assert done.returncode == 5 and "insufficient capacity" in done.stderr, done.stderr
    assert journal(fleet).list_ops()[-1].state is MoveState.ROLLED_BACK
    assert fleet.control.faults() == []  # each was taken by a call at its site
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()


@pytest.mark.parametrize("service,action,stack,expect", [
    ("autoscaling", "TerminateInstanceInAutoScalingGroup", "training", MoveState.ROLLED_BACK),
    ("autoscaling", "SetDesiredCapacity", "inference", MoveState.ROLLED_BACK),
    ("autoscaling", "SetDesiredCapacity", None, MoveState.ROLLING_BACK),
    # The lease is an UpdateItem now, so the first PutItem is the checkpoint's intent (past LOCKED): the
    # rollback cannot journal its undrain intent either and stops resumably instead of acting unjournaled.
    ("dynamodb", "PutItem", None, MoveState.ROLLING_BACK),
])
def test_a_lasting_fault_rolls_back_or_stops_resumably(fleet, service, action, stack, expect):
    account = fleet.inventory.stacks[stack].account_id if stack else None
    fleet.control.inject_fault(service, action, "InternalError", count=1000, account=account)
    failed = run(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes")
    assert failed.returncode == 5, failed.stderr
    j = journal(fleet)
    op = j.list_ops()[-1]
    assert op.state is expect
    fleet.check_invariant()
    fleet.control.clear_faults()
    if expect is MoveState.ROLLING_BACK:
        assert run(fleet, "--resume", op.op_id).returncode == 5
        assert j.load(op.op_id).state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()
    assert not Leases(j).held()


def test_two_moves_at_once_one_is_refused_by_the_lock(fleet):
    j = journal(fleet)
    first = start(fleet, "--from", "training", "--to", "inference", "--nodes", "1", "--yes")
    op_id = wait_for_op(j, first)
    deadline = time.monotonic() + 60
    while not Leases(j).held() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)  # holding the lock, frozen mid-move
    try:
        second = run(fleet, "--from", "training", "--to", "inference", "--nodes", "1", "--yes")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert second.returncode == 4 and f"leased by rebalance {op_id}" in second.stderr, second.stderr
    assert first.returncode == 0, err
    states = sorted(o.state for o in j.list_ops())
    assert states == [MoveState.DONE, MoveState.ROLLED_BACK]
    assert fleet.desired()[TRAIN] == 4 and fleet.desired()[SERVE] == 3
    fleet.check_invariant()


@pytest.mark.parametrize("args,needle", [
    (["--from", "trainin", "--to", "inference", "--nodes", "2"], "--from 'trainin'"),
    (["--from", "training", "--to", "inference", "--nodes", "2", "--pool", "nope", "--yes"], "--pool 'nope'"),
    (["--from", "training", "--to", "inference", "--nodes", "0", "--yes"], "--nodes"),
    (["--from", "training", "--to", "inference", "--nodes", "two"], "--nodes"),
    (["--from", "training", "--nodes", "2", "--yes"], "missing --to"),
    (["--resume", "rb-1", "--from", "training"], "cannot be combined"),
    (["--from", "training", "--to", "inference", "--nodes", "1", "--probe", "pigeon", "--yes"], "--probe 'pigeon'"),
    # caught: an unknown tier was found only after the nodes had moved (stuck in ACQUIRED, lock held)
    (["--from", "training", "--to", "inference", "--nodes", "1", "--tiers", "quick,bogus", "--yes"],
     "--tiers 'quick,bogus'"),
    (["--from", "training", "--to", "inference", "--nodes", "1", "--lease-seconds", "0", "--yes"], "--lease-seconds"),
    # The PHI account forbids SSM: refused before any call (the later --probe wins over start()'s).
    (["--from", "training", "--to", "inference", "--nodes", "1", "--probe", "ssm", "--yes"], "forbids SSM"),
])
def test_bad_flags_exit_2_before_any_aws_call(fleet, args, needle):
    fleet.control.reset_log()
    bad = run(fleet, *args)
    assert bad.returncode == 2 and needle in bad.stderr, bad.stderr
    assert fleet.control.requests() == []


def test_unknown_inventory_exits_2_before_any_aws_call(fleet, tmp_path):
    fleet.control.reset_log()
    proc = subprocess.run([sys.executable, "-m", "gpufleet.automation", "rebalance", "--from", "training", "--to", "inference",
                           "--nodes", "1", "--inventory", str(tmp_path / "missing.json")],
                          env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no inventory" in proc.stderr
    assert fleet.control.requests() == []


@pytest.mark.parametrize("error", ["Throttling", "InternalError"])
def test_heartbeat_survives_faults(fleet, error):
    """The lease renewals (UpdateItem) through the product's clients, with faults on the server."""
    from gpufleet.automation.aws import AwsAccess
    from gpufleet.automation.lease import LeaseKeeper
    from gpufleet.automation.rebalance.service import cached_clients

    ddb = cached_clients(AwsAccess(fleet.inventory))("platform", "dynamodb")
    mine = Leases(Journal(ddb, fleet.inventory.journal_table, owner="a:1:1"))
    other = Leases(Journal(ddb, fleet.inventory.journal_table, owner="b:2:2"))
    held = mine.acquire("h100", "rb-beat", lease_s=6)
    fleet.control.inject_fault("dynamodb", "UpdateItem", error, count=2)  # the first beat is retried twice
    with LeaseKeeper(mine, lambda: held, lease_s=6) as keeper:
        time.sleep(7)  # past the lease taken at acquire: only renewals keep it
        with pytest.raises(ConflictError, match="rb-beat"):
            other.acquire("h100", "rb-other", lease_s=6)
        keeper.check()
    assert fleet.control.faults() == []
    assert [r for r in fleet.control.requests() if r["action"] == "UpdateItem" and not r["error"]]


def test_a_failed_lease_release_after_done_leaves_the_move_done(fleet):
    """Caught: a failed lock release after a successful move turned DONE into an illegal
    DONE -> ROLLING_BACK transition and exit 4."""
    fleet.control.inject_fault("dynamodb", "DeleteItem", "InternalError", count=1000)
    try:
        done = run(fleet, "--from", "training", "--to", "inference", "--nodes", "1", "--yes")
    finally:
        fleet.control.clear_faults()
    assert done.returncode == 0 and "lease was not released" in done.stderr, done.stderr
    j = journal(fleet)
    assert j.list_ops()[-1].state is MoveState.DONE
    assert fleet.desired()[TRAIN] == 4 and fleet.desired()[SERVE] == 3
    fleet.check_invariant()
    # its owner is gone: the next move takes the lease at once
    back = run(fleet, "--from", "inference", "--to", "training", "--nodes", "1", "--yes")
    assert back.returncode == 0, back.stderr
    assert not Leases(j).held()


def test_a_paused_owner_is_fenced_off_after_a_cancel_took_over(fleet):
    """A real CLI process, SIGSTOPped mid-move past its lease: ``--cancel`` may act now (the lease
    expired; while it lasts a cancel is refused: test_rebalance_overlap.py) and rolls back; on SIGCONT the owner's next token write fails and it stops without
    another call. Caught: the old lease was renewed by anyone naming the operation, so the woken
    owner kept going beside the cancel."""
    j = journal(fleet)
    owner = start(fleet, "--from", "training", "--to", "inference", "--nodes", "2", "--yes", "--lease-seconds", "5")
    op_id = wait_for_op(j, owner)
    deadline = time.monotonic() + 120
    while j.load(op_id).state not in {MoveState.RELEASED, MoveState.ACQUIRED} and time.monotonic() < deadline:
        assert owner.poll() is None and j.load(op_id).state not in TERMINAL, owner.communicate()
        time.sleep(0.002)
    owner.send_signal(signal.SIGSTOP)
    try:
        leases = Leases(j)
        pool = j.load(op_id).body["plan"]["pool"]
        for _ in range(200):  # no heartbeat from a stopped process: the lease runs out
            if leases.holder(pool).expires_at < time.time():
                break
            time.sleep(0.1)
        cancelled = run(fleet, "--cancel", op_id)
        assert cancelled.returncode == 5 and "cancelled by the operator" in cancelled.stderr, cancelled.stderr
        calls_after_cancel = len(fleet.control.requests())
    finally:
        owner.send_signal(signal.SIGCONT)
    out, err = owner.communicate(timeout=120)
    assert owner.returncode == 4 and ("lost the lease" in err or "changed under us" in err), err
    woken = [r for r in fleet.control.requests()[calls_after_cancel:]
             if r["action"] in {"SetDesiredCapacity", "TerminateInstanceInAutoScalingGroup"}]
    assert woken == [], woken
    assert j.load(op_id).state is MoveState.ROLLED_BACK
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 2
    fleet.check_invariant()
    assert not Leases(j).held()

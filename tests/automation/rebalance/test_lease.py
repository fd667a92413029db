"""The pool lease against DynamoDB on a real moto server: owner identity, fencing token, expiry,
and a gone owner told from a paused one (real processes, SIGSTOP/SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from gpufleet.automation.lease import LeaseKeeper, Leases, _start_time, owner_gone, process_owner
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.infra.errors import ConflictError

pytestmark = pytest.mark.emulator


def leases(ddb, table, owner, now=None):
    clock = (lambda: now[0]) if now is not None else time.time
    return Leases(Journal(ddb, table, owner=owner, clock=clock))


def test_a_live_owner_keeps_its_lease_until_it_expires_and_every_acquisition_bumps_the_token(journal_ddb):
    """Caught: the old lock let any process naming the same operation take it (``op_id = :op``), so
    ``--cancel OP`` acted beside the live owner of OP."""
    ddb, table = journal_ddb
    now = [1000.0]
    first, second = leases(ddb, table, "host-a:1:1", now), leases(ddb, table, "host-b:2:2", now)
    held = first.acquire("h100", "rb-a", lease_s=60)
    again = first.acquire("h100", "rb-a", lease_s=60)  # re-entrant for its owner
    assert again.token == held.token + 1
    for op in ("rb-a", "rb-b"):  # the same operation (a cancel) or another one
        with pytest.raises(ConflictError) as refused:
            second.acquire("h100", op, lease_s=60)
        assert "rb-a" in refused.value.message and "host-a:1:1" in refused.value.message
    assert second.acquire("a100", "rb-b", lease_s=60).token == 1  # another pool: its own lease
    now[0] += 50
    first.fence(again, lease_s=60)  # the fence write extends the lease
    now[0] += 50
    with pytest.raises(ConflictError):
        second.acquire("h100", "rb-a", lease_s=60)
    now[0] += 20
    taken = second.acquire("h100", "rb-a", lease_s=60)  # expired: taken over, new token
    assert taken.token == again.token + 1
    with pytest.raises(ConflictError, match="lost the lease of pool h100"):
        first.fence(again)  # the paused owner, back: fenced off before its next call
    first.release(again)  # not ours any more: a no-op
    assert second.holder("h100").owner == "host-b:2:2"
    second.release(taken)
    assert second.holder("h100") is None


def test_a_gone_owner_is_taken_over_at_once_a_stopped_one_is_not(journal_ddb):
    ddb, table = journal_ddb
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{process_owner().split(':')[0]}:{child.pid}:{_start_time(child.pid)}"
        held = leases(ddb, table, owner).acquire("h100", "rb-x", lease_s=600)
        mine = leases(ddb, table, process_owner())
        child.send_signal(signal.SIGSTOP)  # paused: alive, keeps its lease
        with pytest.raises(ConflictError, match="rb-x"):
            mine.acquire("h100", "rb-x")
        assert not owner_gone(owner)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert owner_gone(owner)
        assert mine.acquire("h100", "rb-x").token == held.token + 1
    finally:
        child.kill()
        child.wait(timeout=30)
    assert not owner_gone("other-host:1:1") and not owner_gone(process_owner())


def test_lease_keeper_heartbeat_keeps_the_lease_and_notices_losing_it(journal_ddb):
    ddb, table = journal_ddb
    mine, other = leases(ddb, table, "a:1:1"), leases(ddb, table, "b:2:2")
    held = mine.acquire("h100", "rb-k", lease_s=0.6)
    with LeaseKeeper(mine, lambda: held, lease_s=0.6) as keeper:
        time.sleep(1.5)  # two and a half leases: only the heartbeat keeps it
        with pytest.raises(ConflictError):
            other.acquire("h100", "rb-o", lease_s=0.6)
        keeper.check()
    time.sleep(0.8)  # no heartbeat any more: the lease runs out
    other.acquire("h100", "rb-o", lease_s=60)
    with LeaseKeeper(mine, lambda: held, lease_s=0.3) as keeper:
        time.sleep(0.5)
        with pytest.raises(ConflictError, match="lost the lease"):
            keeper.check()

"""One lease per capacity pool, for everything that changes a node group: rebalance, health
--replace, the healer (``heal-...``), and later the scheduler. It lives in the journal table.

    lease item  pk="lease#pool#<pool>"  sk="lease"  op_id, owner, kind, token (N), expires_at, heartbeat_at

Keyed per pool, not per node group: the invariant (the sum of the consumers' desired nodes <= the
pool's count) is per pool, a move changes two groups of one pool at once, and a replacement
launches from the same reservation, so anything acting on one group of a pool can break a move on
another group of it.

The owner is ``host:pid:start``, the token a counter every acquisition increments (the fencing
token). A lease can be taken only when it is free, expired, or its owner is proven gone (the same
host, and no process with that pid and start time: a SIGKILLed run, resumed at once). A paused or
slow owner is alive and keeps its lease, so a cancel, resume or second process is refused until
the lease expires. Before each external call the holder writes its token conditionally
(``fence``): the write fails once someone else took the lease, and the call is not made.

A move stepped by the scheduler (``Executor.step``, one pass a minute) parks its lease at the end
of each pass (``park``): every other operation is still refused, but the next pass continuing the
same operation takes it at once, with a new token. A pass that dies unparked is taken over like any
holder: once its owner is proven gone or its lease expired.

What remains: the Auto Scaling and orchestrator APIs take no condition, so a holder paused between
its fence write and the call's arrival (longer than the lease) can still land one call after a new
owner took over. The window is one call long; the new owner observes before it acts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from gpufleet.infra.errors import AwsError, ConflictError

if TYPE_CHECKING:
    from gpufleet.automation.rebalance.journal import Journal

LEASE_PREFIX = "lease#pool#"
DEFAULT_LEASE_S = 120.0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_owner() -> str:
    """This process's identity: host, pid and start time (a reused pid is another process)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


def owner_gone(owner: str) -> bool:
    """True only when ``owner`` ran on this host and that process no longer exists."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    started = _start_time(int(parts[1]))
    return started is None or (parts[2] != "0" and started != parts[2])


@dataclass(frozen=True, kw_only=True)
class LeaseHolder:
    """A lease as the journal holds it."""

    pool: str
    op_id: str
    """The operation holding it (rb-..., rp-...)."""
    owner: str
    """``host:pid:start`` of the process holding it."""
    kind: str
    """rebalance | replace | heal (and later schedule)."""
    token: int
    """Fencing token: incremented by every acquisition."""
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class Held:
    """A lease this process holds."""

    pool: str
    op_id: str
    token: int


def _key(pool: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": LEASE_PREFIX + pool}, "sk": {"S": "lease"}}


class Leases:
    """Acquire, fence, renew and release pool leases through a journal's table and identity."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def holder(self, pool: str) -> LeaseHolder | None:
        item = self.journal._call("get_item", Key=_key(pool), ConsistentRead=True).get("Item")
        if not item:
            return None
        return LeaseHolder(pool=pool, op_id=item["op_id"]["S"], owner=item["owner"]["S"], kind=item["kind"]["S"],
                           token=int(item["token"]["N"]), expires_at=float(item["expires_at"]["N"]))

    def held(self) -> list[LeaseHolder]:
        """Every lease item (expired ones included)."""
        page = self.journal._call("scan", FilterExpression="sk = :l", ConsistentRead=True,
                                  ExpressionAttributeValues={":l": {"S": "lease"}})
        return [h for h in (self.holder(i["pk"]["S"][len(LEASE_PREFIX):]) for i in page.get("Items", [])) if h]

    def acquire(self, pool: str, op_id: str, lease_s: float = DEFAULT_LEASE_S, *, kind: str = "rebalance") -> Held:
        """Take the pool's lease for ``op_id``: free, expired, ours, parked for ``op_id``, or its owner is
        gone. Otherwise ConflictError. Taking it unparks it."""
        me, now = self.journal.owner, self.journal.clock()
        condition = ("attribute_not_exists(pk) OR expires_at < :now OR (op_id = :op AND #ow = :me) "
                     "OR (op_id = :op AND parked = :yes)")
        values: dict[str, Any] = {":yes": {"BOOL": True}}
        for _ in range(2):
            try:
                got = self.journal._call(
                    "update_item", Key=_key(pool), ReturnValues="ALL_NEW",
                    UpdateExpression="SET op_id = :op, #ow = :me, kind = :kind, expires_at = :exp, "
                                     "heartbeat_at = :now REMOVE parked ADD #tk :one",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#ow": "owner", "#tk": "token"},
                    ExpressionAttributeValues={":op": {"S": op_id}, ":me": {"S": me}, ":kind": {"S": kind},
                                               ":exp": {"N": repr(now + lease_s)}, ":now": {"N": repr(now)},
                                               ":one": {"N": "1"}, **values})
                return Held(pool=pool, op_id=op_id, token=int(got["Attributes"]["token"]["N"]))
            except ClientError:
                held = self.holder(pool)
                if held is None or not owner_gone(held.owner) or len(values) > 1:
                    break
                # Its process is gone: take over exactly that holding (a racing claimant changes the token).
                condition = "#ow = :dead AND #tk = :dtok"
                values = {":dead": {"S": held.owner}, ":dtok": {"N": str(held.token)}}
        held = self.holder(pool)
        who = (f"{held.kind} {held.op_id} (owner {held.owner}, lease until "
               f"{time.strftime('%H:%M:%S', time.gmtime(held.expires_at))} UTC)") if held else "another operation"
        raise ConflictError(f"pool {pool} is leased by {who}",
                            f"wait for it to finish or for its lease to expire; a stopped run: "
                            f"gpufleet rebalance --resume {held.op_id if held else 'OP_ID'}")

    def _extend(self, held: Held, seconds: float, *, parked: bool) -> bool:
        """Extend our lease by ``seconds`` (and mark it parked), conditional on our token: False
        once someone else took it."""
        now = self.journal.clock()
        values = {":tok": {"N": str(held.token)}, ":me": {"S": self.journal.owner}, ":op": {"S": held.op_id},
                  ":exp": {"N": repr(now + seconds)}, ":now": {"N": repr(now)}}
        update = "SET expires_at = :exp, heartbeat_at = :now"
        if parked:
            update, values[":yes"] = update + ", parked = :yes", {"BOOL": True}
        try:
            self.journal._call("update_item", Key=_key(held.pool), UpdateExpression=update,
                               ConditionExpression="#tk = :tok AND #ow = :me AND op_id = :op",
                               ExpressionAttributeNames={"#tk": "token", "#ow": "owner"},
                               ExpressionAttributeValues=values)
        except ClientError:
            return False
        return True

    def fence(self, held: Held, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Write our token conditionally (and extend the lease): ConflictError once someone else took it."""
        if not self._extend(held, lease_s, parked=False):
            now_held = self.holder(held.pool)
            who = f"{now_held.kind} {now_held.op_id} (owner {now_held.owner}, token {now_held.token})" if now_held else "nobody"
            raise ConflictError(f"{held.op_id} lost the lease of pool {held.pool} (token {held.token}); held by {who}",
                                "another process took over after our lease expired; it owns the operation now")

    def park(self, held: Held, park_s: float) -> None:
        """Hand the lease over between passes of a stepped move: still held against every other
        operation for ``park_s``, but the next pass continuing ``held.op_id`` may take it at once
        (a new token). ConflictError once someone else took it."""
        if not self._extend(held, park_s, parked=True):
            raise ConflictError(f"{held.op_id} lost the lease of pool {held.pool} (token {held.token}) before parking it",
                                "another process took over; it owns the operation now")

    def release_op(self, pool: str, op_id: str) -> None:
        """Drop the pool's lease if ``op_id`` holds it, whoever its owner (the operation has ended)."""
        with contextlib.suppress(ClientError):
            self.journal._call("delete_item", Key=_key(pool), ConditionExpression="op_id = :op",
                               ExpressionAttributeValues={":op": {"S": op_id}})

    def release(self, held: Held) -> None:
        """Drop the lease if it is still ours (a no-op otherwise)."""
        with contextlib.suppress(ClientError):
            self.journal._call("delete_item", Key=_key(held.pool),
                               ConditionExpression="#tk = :tok AND #ow = :me",
                               ExpressionAttributeNames={"#tk": "token", "#ow": "owner"},
                               ExpressionAttributeValues={":tok": {"N": str(held.token)},
                                                          ":me": {"S": self.journal.owner}})


class LeaseKeeper:
    """Renews (fences) a lease every third of it from a daemon thread while the run lasts.

    A refused renewal (someone else holds the lease now) is kept and raised by ``check``; a failed
    call is retried at the next beat. A killed or stopped process stops renewing, so its lease expires.
    """

    def __init__(self, leases: Leases, held: Callable[[], Held | None], lease_s: float = DEFAULT_LEASE_S) -> None:
        self.leases = leases
        self.held = held
        """The lease held now (None: not yet taken); re-read at each beat, since a re-acquisition changes the token."""
        self.lease_s = lease_s
        self.error: ConflictError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            held = self.held()
            if held is None:
                continue
            try:
                self.leases.fence(held, self.lease_s)
            except ConflictError as lost:
                self.error = lost
                return
            except AwsError:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

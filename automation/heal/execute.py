"""One healing action, journaled like a move and resumable from any state.

A heal operation lives in the rebalance journal (op id ``heal-...``, body ``kind: heal``) and runs
under the lease of its node's pool (``gpufleet.automation.lease``, kind ``heal``): the one the
rebalancer and ``health --replace`` take, so one operation changes a pool at a time. Its states:

    replace  PLANNED -> LOCKED -> CHECKPOINTING (drain, checkpoint signal) -> DRAINED (requeued, idle)
             -> RELEASED (terminated, desired capacity kept) -> ACQUIRED (the group's new instance
             InService) -> HEALTHY (its node registered, the gate passed) -> JOINED (admitted) -> DONE
    spare    a pool short of its hot spares: PLANNED -> LOCKED -> CHECKPOINTING -> DRAINED (no node
             to drain) -> RELEASED (the group's desired capacity raised by one, if the reservation
             has a free slot: heal/spare_slot.py) -> ACQUIRED -> HEALTHY (gated) -> JOINED (held
             as a spare) -> DONE
    swap     a replacement with a held spare of the group (``heal/spares.py``): the spare is
             admitted as the node is drained, before the requeue, and at JOINED the gated newcomer
             is held as the new spare instead of admitted
    reboot   PLANNED -> LOCKED -> CHECKPOINTING -> DRAINED -> RELEASED (``scontrol reboot ASAP
             nextstate=RESUME``) -> ACQUIRED (back from the reboot) -> HEALTHY (the node's own
             check did not drain it again; a node back held by its reservation, as GPU nodes come
             back, passed the gate) -> JOINED (its hold lifted) -> DONE

The lease is taken before the operation is journaled (a refused lease leaves nothing behind) and
again, by op id, each time a pass drives it on: free, expired, or its owner gone (a killed healer's
operation is resumed at once on the same host, elsewhere once its lease expired). Before each
external call (drain, checkpoint signal, requeue, terminate, reboot, admit) the healer writes its
fencing token conditionally, and a call is not made once another process took the lease; a
heartbeat renews it while a step waits. It is released when a pass leaves the operation, except
while a replacement is between its termination and the newcomer's admission (the group's capacity
is in flux): then it is left to expire, and the next pass (of a ``--loop``, within the lease) takes
it again. A newcomer that fails the gate ends ROLLED_BACK with the reason, drained
``gpufleet gate failed`` (and still held): the next pass replaces it through the same path and
budget, and a run of them is reported instead (heal/gate_failures.py). A fault back after its
reboot ends ROLLED_BACK too (the node stays held; the next pass decides again). Each external call's intent is
journaled before it and its result after; a resumed step first looks at the world (is the instance
still in the group?) before calling again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.auto_scaling import call, read_group
from gpufleet.automation.aws import translated
from gpufleet.automation.heal.grace import grace_s
from gpufleet.automation.heal.observe import GATE_FAILED_REASON, HOOK_PREFIX, rebooting
from gpufleet.automation.heal.spare_slot import Slot, by_claims, by_reservation
from gpufleet.automation.heal.spares import admit_spare, hold_as_spare
from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.probe import NodeProbe
from gpufleet.automation.lease import Held, LeaseKeeper, Leases
from gpufleet.automation.orchestrators.slurm import WORKING, SlurmOrchestrator
from gpufleet.automation.rebalance.journal import Operation
from gpufleet.automation.rebalance.state import TERMINAL, MoveState
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.infra.errors import OperationFailed
from gpufleet.lifecycle.health.results import Tier
from gpufleet.lifecycle.slurm.hold import hold_reservation

KIND = "heal"
UNPOOLED = "-unpooled"
"""The lease of nodes tied to no pool (no known instance, hence no group): only a reboot reaches them."""
IN_FLUX = frozenset({MoveState.RELEASED, MoveState.ACQUIRED, MoveState.HEALTHY, MoveState.JOINED})
"""A replacement's states between the termination and the newcomer's admission."""
SPARE = "spare"
"""The action of an operation that launches a pool's missing hot spare (no faulty node)."""
LAUNCHING = ("replace", SPARE)
"""Actions whose group's capacity is in flux between RELEASED and JOINED."""


def lease_pool(body: dict[str, Any]) -> str:
    """The pool whose lease a heal operation runs under."""
    return body.get("pool") or UNPOOLED


def new_heal_id(now: float) -> str:
    return time.strftime("heal-%Y%m%d-%H%M%S-", time.gmtime(now)) + secrets.token_hex(3)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How long each waiting step may take, and the lease."""

    lease_s: float = 120.0
    drain_timeout_s: float = 600.0
    """For the node's jobs to checkpoint and leave after the requeue."""
    replace_timeout_s: float = 1200.0
    """For the group's new instance to be InService."""
    reboot_timeout_s: float = 900.0
    """For a rebooted node to be back."""
    join_timeout_s: float = 900.0
    """For the new instance's node to register with the orchestrator (its bootstrap: minutes after
    InService) before the gate probes it; 0: gate at once (no node of the newcomer will appear)."""
    checkpoint_grace_s: float | None = None
    """After the checkpoint signal, how long the node's jobs get to save and requeue themselves
    before the healer requeues what is left; None: from the jobs' published checkpoint time
    (heal/grace.py), torchrun's 30 s where they publish none."""
    poll_s: float = 2.0


class Stalled(Exception):
    """A step is waiting on the world (jobs still running, instance not up yet); resume later."""


class HealExecutor:
    """Drives heal operations to a terminal state (or to a step that must wait for the world)."""

    def __init__(self, journal: Any, slurm: SlurmClient, asg: Callable[[str], Any], probes: Callable[[str], NodeProbe],
                 tiers: Sequence[Tier], limits: Limits, progress: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep, ec2: Callable[[str], Any] | None = None) -> None:
        self.journal = journal
        self.slurm = slurm
        self.orchestrator = SlurmOrchestrator(slurm)
        self.asg = asg
        """stack -> that account's autoscaling client."""
        self.ec2 = ec2
        """stack -> that account's EC2 client (a held healer's spare reads the shared reservation)."""
        self.probes = probes
        """stack -> the probe the gate reaches that account's nodes with."""
        self.tiers = tuple(tiers)
        self.limits = limits
        self.progress = progress
        self.sleep = sleep
        self.leases = Leases(journal)
        self._held: Held | None = None
        """The pool lease this pass holds for the operation it drives (its fencing token)."""
        self._keeper: LeaseKeeper | None = None

    # -- the loop --------------------------------------------------------------------------------
    def start(self, op_id: str, body: dict[str, Any]) -> Operation:
        """Take the pool's lease, then journal the new operation (ConflictError: nothing written)."""
        held = self.leases.acquire(lease_pool(body), op_id, self.limits.lease_s, kind=KIND)
        try:
            return self.journal.create(op_id, body)
        except BaseException:
            self.leases.release(held)
            raise

    def release_ended(self, ops: Sequence[Operation]) -> list[str]:
        """Drop the leases still naming an operation of ``ops`` that has ended: its pass died after
        the last transition and before the release (else the pool stays refused to every other
        operation until the lease expires). Returns a note per lease dropped."""
        ended = {op.op_id: op for op in ops if op.state in TERMINAL}
        notes = []
        for holder in self.leases.held():
            op = ended.get(holder.op_id)
            if op is not None and holder.kind == KIND:
                self.leases.release_op(holder.pool, holder.op_id)
                notes.append(f"{holder.op_id} ended {op.state}: its lease on pool {holder.pool} released")
        return notes

    def run(self, op: Operation) -> Operation:
        """Advance ``op`` as far as it goes now; Stalled leaves it journaled for the next pass.

        ConflictError: another process holds the pool's lease (nothing was done), or took it while
        this pass ran (no call was made after that)."""
        pool = lease_pool(op.body)
        if op.state in TERMINAL:
            self.leases.release_op(pool, op.op_id)
            return op
        self._held = self.leases.acquire(pool, op.op_id, self.limits.lease_s, kind=KIND)
        try:
            with LeaseKeeper(self.leases, lambda: self._held, self.limits.lease_s) as self._keeper:
                try:
                    for _ in range(len(MoveState) + 1):
                        if op.state in TERMINAL:
                            break
                        self._keeper.check()
                        op = self._step(op)
                except Stalled as wait:
                    self.progress(f"{op.op_id}: waiting at {op.state}: {wait}")
                    self.journal.record(op, "note", str(op.state), {"waiting": str(wait)})
        finally:
            self._keeper = None
            # While a replacement is in flight the group's capacity is in flux: keep the lease (it
            # expires unless the next pass takes it again). Otherwise let the others have the pool.
            if op.state in TERMINAL or not (op.body["action"] in LAUNCHING and op.state in IN_FLUX):
                self.leases.release(self._held)
            self._held = None
        return op

    def _fence(self) -> None:
        """ConflictError unless the pool's lease still carries our token (the write also extends it)."""
        if self._keeper is not None:
            self._keeper.check()
        if self._held is not None:
            self.leases.fence(self._held, self.limits.lease_s)

    def _fenced(self, call: Callable[[], Any]) -> Any:
        """Make one external call only while the pool's lease is ours."""
        self._fence()
        return call()

    def _step(self, op: Operation) -> Operation:
        b = op.body
        node = b["node"]
        s = op.state
        if s is MoveState.PLANNED:
            held = self._held
            return self.journal.transition(op, MoveState.LOCKED, {"owner": self.journal.owner, "pool": lease_pool(b),
                                                                   "token": held.token if held else None})
        if s is MoveState.LOCKED and b["action"] == SPARE:
            return self.journal.transition(op, MoveState.CHECKPOINTING, {"nothing": "no node to drain"})
        if s is MoveState.CHECKPOINTING and b["action"] == SPARE:
            return self.journal.transition(op, MoveState.DRAINED, body={**b, "before": self._in_service(b)})
        if s is MoveState.LOCKED:
            self.journal.record(op, "intent", "checkpoint", {"node": node})
            why = f"gpufleet heal {b['action']}: {b['reason']}"[:200]
            self._fenced(lambda: self.slurm.update_nodes([node], State="DRAIN", Reason=why))
            jobs = self._jobs(node)
            for job in jobs:
                self._fenced(lambda j=job.job_id: self.slurm.signal(j, "USR1"))  # the runtime checkpoints on it
            grace = grace_s(jobs, self.limits.checkpoint_grace_s) if jobs else 0.0
            # Journaled with the signal: a resumed step waits out the rest of the grace, not a new one.
            op = self.journal.record(op, "result", "checkpoint", {"signalled": [j.job_id for j in jobs], "grace_s": grace},
                                     body={**b, "signalled_at": time.time(), "grace_s": grace,
                                           "signalled": [j.job_id for j in jobs]})
            b = op.body
            self.progress(f"{node}: drained, jobs told to checkpoint ({grace:.0f} s to save and requeue themselves)")
            if b.get("swap_with"):
                # Before the requeue, so the requeued job lands on the spare instead of waiting for a boot.
                self.journal.record(op, "intent", "admit_spare", {"node": b["swap_with"]})
                self._fenced(lambda: admit_spare(self.slurm, b["swap_with"]))
                self.progress(f"{b['swap_with']}: spare admitted in place of {node}")
            return self.journal.transition(op, MoveState.CHECKPOINTING)
        if s is MoveState.CHECKPOINTING:
            signalled = set(self._signalled(op))
            self._grace(node, float(b.get("signalled_at") or 0) + float(b.get("grace_s") or 0))
            jobs = [j.job_id for j in self._jobs(node)]
            for job in jobs:
                self._fenced(lambda j=job: self.slurm.requeue(j))
            self._wait(lambda: not self._jobs(node), self.limits.drain_timeout_s,
                       f"jobs on {node} to leave")
            on_their_own = sorted(signalled - set(jobs))
            self.progress(f"{node}: idle (left on their own after the signal: {', '.join(on_their_own) or 'none'}; "
                          f"requeued by the healer: {', '.join(jobs) or 'none'})")
            before = self._in_service(b) if b["action"] == "replace" else []
            return self.journal.transition(op, MoveState.DRAINED, {"requeued": jobs, "left_on_their_own": on_their_own},
                                           body={**b, "before": before})
        if s is MoveState.DRAINED:
            return self._release(op)
        if s is MoveState.RELEASED:
            return self._acquire(op)
        if s is MoveState.ACQUIRED:
            return self._check(op)
        if s is MoveState.HEALTHY:
            if b["action"] == SPARE or (b["action"] == "replace" and b.get("swap_with")):
                # The newcomer takes the spare's place: held, not admitted (once registered).
                held = self._wait(lambda: self._fenced(lambda: hold_as_spare(self.slurm, b["replaced_by"])),
                                  self.limits.replace_timeout_s, f"{', '.join(b['replaced_by'])} registered in Slurm")
                self.progress(f"{', '.join(held)}: held as the new spare")
                return self.journal.transition(op, MoveState.JOINED,
                                               {"admitted": [b["swap_with"]] if b.get("swap_with") else [], "spare": held})
            if b["action"] == "replace":
                self._fenced(lambda: self.orchestrator.admit(b["replaced_by"]))
            elif b.get("gated"):
                held = hold_reservation(b["gated"])
                if held in {r["ReservationName"] for r in self.slurm.reservations()}:
                    self._fenced(lambda: self.slurm.delete_reservation(held))
            return self.journal.transition(op, MoveState.JOINED, {"admitted": b.get("replaced_by") or [node]})
        if s is MoveState.JOINED:
            return self.journal.transition(op, MoveState.DONE)
        if s is MoveState.ROLLING_BACK:
            return self.journal.transition(op, MoveState.ROLLED_BACK)
        raise AssertionError(f"no step from {s}")

    def _release(self, op: Operation) -> Operation:
        b = op.body
        if b["action"] == "reboot":
            self.journal.record(op, "intent", "reboot", {"node": b["node"]})
            self._fenced(lambda: self.slurm.reboot([b["node"]], f"gpufleet heal reboot: {b['reason']}"[:200]))
            self.progress(f"{b['node']}: reboot requested (ASAP, nextstate=RESUME)")
            return self.journal.transition(op, MoveState.RELEASED, {"reboot": b["node"]})
        if b["action"] == SPARE:
            return self._launch_spare(op)
        client = self.asg(b["stack"])
        activity = None
        if b["instance_id"] in self._in_service(b):
            self.journal.record(op, "intent", "terminate", {"instance_id": b["instance_id"]})
            self._fence()
            with translated(stack=b["stack"], service="autoscaling", subject=b["instance_id"],
                            operation="terminate_instance_in_auto_scaling_group"):
                doc = client.terminate_instance_in_auto_scaling_group(InstanceId=b["instance_id"],
                                                                      ShouldDecrementDesiredCapacity=False)
            activity = doc.get("Activity", {}).get("ActivityId")
        self.progress(f"{b['instance_id']}: terminated; {b['asg']} launches its replacement into the same reservation")
        return self.journal.transition(op, MoveState.RELEASED, {"activity": activity})

    def _launch_spare(self, op: Operation) -> Operation:
        """One more node in the holding group, into a free reservation slot (heal/spare_slot.py:
        no group's desired size claims it, or, for a healer held to its own stack, EC2's count of
        the shared reservation has it), checked under the lease, which the rebalancer takes too; a
        resumed step does not raise it twice."""
        b = op.body
        mine = read_group(self.asg(b["stack"]), b["asg"], b["asg"])
        if "desired_before" not in b:
            slot = self._spare_slot(b)
            if not slot.free:
                return self.journal.transition(op, MoveState.ROLLING_BACK, {"no_slot": slot.why, **slot.read},
                                               body={**b, "no_slot": slot.why})
            op = self.journal.record(op, "intent", "launch_spare", {"desired": mine.desired + 1, **slot.read},
                                     body={**b, "desired_before": mine.desired})
            b = op.body
        if mine.desired == b["desired_before"]:
            self._fenced(lambda: call(self.asg(b["stack"]), "set_desired_capacity", b["asg"], AutoScalingGroupName=b["asg"],
                                      DesiredCapacity=b["desired_before"] + 1, HonorCooldown=False))
        self.progress(f"{b['asg']}: desired {b['desired_before']} -> {b['desired_before'] + 1} for a hot spare of {b['pool']}")
        return self.journal.transition(op, MoveState.RELEASED, {"desired": b["desired_before"] + 1})

    def _spare_slot(self, b: dict[str, Any]) -> Slot:
        if not b.get("reservation_id"):
            return by_claims(self.asg, b["pool"], b["pool_groups"], b["pool_count"])
        if self.ec2 is None:
            raise OperationFailed(f"pool {b['pool']}: this healer has no EC2 client to read reservation "
                                  f"{b['reservation_id']} with")
        return by_reservation(self.ec2, self.asg, b["stack"], b["pool"], b["reservation_id"], b["pool_groups"])

    def _acquire(self, op: Operation) -> Operation:
        b = op.body
        if b["action"] == "reboot":
            node = self._wait(lambda: self._back(b["node"]), self.limits.reboot_timeout_s, f"{b['node']} back")
            return self.journal.transition(op, MoveState.ACQUIRED, {"state": node.state, "reason": node.reason})
        before = set(b.get("before") or ())
        fresh = self._wait(lambda: [i for i in self._in_service(b) if i not in before and i != b["instance_id"]],
                           self.limits.replace_timeout_s, f"a new instance InService in {b['asg']}")[:1]
        self.progress(f"{b['asg']}: {fresh[0]} InService "
                      + (f"as a hot spare of {b['pool']}" if b["action"] == SPARE else f"in place of {b['instance_id']}"))
        return self.journal.transition(op, MoveState.ACQUIRED, {"replaced_by": fresh},
                                       body={**b, "replaced_by": fresh})

    def _check(self, op: Operation) -> Operation:
        b = op.body
        if b["action"] == "reboot":
            node = next((n for n in self.slurm.nodes() if n.name == b["node"]), None)
            if node is not None and "DRAIN" in node.state.upper() and node.reason.startswith(HOOK_PREFIX):
                return self.journal.transition(op, MoveState.ROLLING_BACK,
                                               {"fault_back": node.reason})
            if node is not None and hold_reservation(node.name) in {r["ReservationName"] for r in self.slurm.reservations()}:
                # It registered held (slurmd's unit holds a GPU node at every start): the gate admits it.
                if not b.get("stack"):
                    return self.journal.transition(op, MoveState.ROLLING_BACK, {
                        "gate": f"{node.name} is back held and tied to no stack: no probe to gate it with; "
                                "it stays held"})
                report = gate([b.get("instance_id") or node.name], self.probes(b["stack"]), self.tiers)
                self.progress(f"gate of {node.name} after its reboot: {'pass' if report.ok else report.summary}")
                if not report.ok:
                    return self.journal.transition(op, MoveState.ROLLING_BACK, {"gate": report.summary})
                return self.journal.transition(op, MoveState.HEALTHY, {"gate": "pass", "state": node.state},
                                               body={**b, "gated": node.name})
            return self.journal.transition(op, MoveState.HEALTHY, {"state": node.state if node else "gone"})
        self._await_join(b)
        report = gate(b["replaced_by"], self.probes(b["stack"]), self.tiers)
        self.progress(f"gate of {', '.join(b['replaced_by'])}: {'pass' if report.ok else report.summary}")
        if not report.ok:
            return self._gate_failed(op, report.summary)
        return self.journal.transition(op, MoveState.HEALTHY, {"gate": "pass"})

    def _gate_failed(self, op: Operation, summary: str) -> Operation:
        """The newcomer never serves: drained for the next pass to replace (heal/gate_failures.py)."""
        b = op.body
        ids = set(b["replaced_by"])
        nodes = self._newcomer_nodes(b, ids)
        why = f"{GATE_FAILED_REASON}: {op.op_id}: {summary}"[:200]
        op = self.journal.record(op, "intent", "drain_newcomer", {"nodes": nodes, "reason": why},
                                 body={**b, "gate_failed": summary[:300]})
        if nodes:
            self._fenced(lambda: self._hold_failed(b, op.op_id, nodes, why))
        self.journal.record(op, "result", "drain_newcomer", {"drained": nodes})
        self.progress(f"{', '.join(nodes) or ', '.join(ids)}: failed its gate; "
                      + ("drained for the next pass to replace" if nodes else "no Slurm node to drain"))
        return self.journal.transition(op, MoveState.ROLLING_BACK, {"gate": summary, "drained": nodes})

    def _await_join(self, b: dict[str, Any]) -> None:
        """InService comes before the bootstrap has joined the node: probing it now would fail it."""
        if self.limits.join_timeout_s > 0:
            self._wait(lambda: all(w.known for w in self.orchestrator.work(b["replaced_by"])),
                       self.limits.join_timeout_s, f"node of {', '.join(b['replaced_by'])} registered")

    def _newcomer_nodes(self, b: dict[str, Any], ids: set[str]) -> list[str]:
        """The Slurm nodes of these instances (an orchestrator without Slurm overrides it)."""
        return sorted(n.name for n in self.slurm.nodes() if n.instance_ids & ids)

    def _hold_failed(self, b: dict[str, Any], op_id: str, nodes: list[str], why: str) -> None:
        """Mark newcomers that failed their gate for the next pass (``gate_failed``): drained on Slurm."""
        self.slurm.update_nodes(nodes, State="DRAIN", Reason=why)

    def _signalled(self, op: Operation) -> list[str]:
        return [str(j) for j in op.body.get("signalled") or ()]

    def _grace(self, node: str, until: float) -> None:
        """Wait, up to the epoch ``until``, for the node's jobs to checkpoint and leave on their own."""
        for _ in range(100_000):
            if not self._jobs(node) or time.time() >= until:
                return
            if self._keeper is not None:
                self._keeper.check()
            self.sleep(min(self.limits.poll_s, max(0.0, until - time.time())))

    # -- the world -------------------------------------------------------------------------------
    def _jobs(self, node: str) -> list[Any]:
        return self.slurm.queue(node=node, states=WORKING)

    def _in_service(self, b: dict[str, Any]) -> list[str]:
        return read_group(self.asg(b["stack"]), b["asg"], b["asg"]).in_service

    def _back(self, name: str) -> Any:
        node = next((n for n in self.slurm.nodes() if n.name == name), None)
        return node if node is not None and not rebooting(node) else None

    def _wait(self, probe: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        for _ in range(100_000):
            got = probe()
            if got:
                return got
            if self._keeper is not None:
                self._keeper.check()  # the keeper renews the lease while we wait; stop once it is lost
            if time.monotonic() >= deadline:
                raise Stalled(f"no {what} after {timeout_s:.0f} s")
            self.sleep(self.limits.poll_s)
        raise Stalled(f"no {what}")

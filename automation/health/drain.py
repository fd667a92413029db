"""`health --replace`'s drain: tell the work first, give it the healer's checkpoint grace, then move
off only what stayed.

Through the orchestrator adapter (automation/orchestrators/base.py), so Slurm and EKS alike:
``request_checkpoint`` (Slurm: drain and USR1 to each job; Kubernetes: cordon), ``jobs`` (the jobs
signalled, with the checkpoint time they publish), ``drained``, ``evict``. The grace is
automation/heal/grace.py's ``grace_s``, the healer's and the rebalancer's: a requeue sent at once
reaches a job still in its step as SIGTERM before it saved on USR1. A manager that names no jobs
(Kubernetes, where the eviction's SIGTERM is the signal and the pod's termination grace period the
time to save) gets no wait: nothing was signalled that could leave on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.heal.grace import grace_s

PROGRESS_EVERY_S = 5.0
"""How often the wait says what it still waits for."""


@dataclass(frozen=True, kw_only=True)
class Drain:
    """One workload manager's nodes drained before their replacement."""

    orchestrator: str
    """slurm | eks | none."""
    stack: str
    nodes: tuple[str, ...]
    """Instance ids."""
    grace_s: float
    """What the signalled jobs had to checkpoint and leave on their own (0: none was signalled)."""
    signalled: tuple[str, ...] = ()
    """Jobs told to checkpoint (Slurm job ids)."""
    left_on_their_own: tuple[str, ...] = ()
    """Signalled jobs gone within the grace (saved and requeued themselves)."""
    requeued: tuple[str, ...] = ()
    """Jobs still on the nodes when the grace was over: evicted (requeued, pods evicted)."""
    waited_s: float = 0.0
    """Seconds from the signal to the end of the wait (shorter than the grace when all left)."""
    still_busy: tuple[str, ...] = ()
    """Nodes with work left after the eviction's bounded wait (replaced anyway: they failed)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


Manager = Any
"""A gpufleet.automation.orchestrators adapter (jobs, drained, evict, request_checkpoint)."""


def drain(managers: Mapping[tuple[str, str], tuple[Manager, Sequence[str]]], reasons: Mapping[str, str],
          configured_grace_s: float | None, progress: Callable[[str], None], *, drain_timeout_s: float = 120.0,
          poll_s: float = 1.0, before_evict: Callable[[], None] = lambda: None,
          note: Callable[[str, str, dict[str, Any]], None] = lambda event, step, detail: None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[Drain]:
    """Signal every manager's nodes, wait (one bounded wait for all) until each manager's nodes are
    drained or its grace is over, then evict what stayed and wait, bounded, for it to leave.

    ``managers``: (kind, stack) -> (adapter, instance ids); ``reasons``: (kind, stack) -> the drain
    reason. ``note`` journals (event type, step, detail); ``before_evict`` checks the leases."""
    started = clock()
    signalled: dict[tuple[str, str], list[str]] = {}
    grace: dict[tuple[str, str], float] = {}
    for key, (manager, ids) in managers.items():
        note("intent", "checkpoint", {"orchestrator": key[0], "stack": key[1], "nodes": list(ids)})
        manager.request_checkpoint(ids, reasons[key])
        jobs = manager.jobs(ids)
        signalled[key] = [j.job_id for j in jobs]
        grace[key] = grace_s(jobs, configured_grace_s) if jobs else 0.0
        note("result", "checkpoint", {"orchestrator": key[0], "stack": key[1], "signalled": signalled[key],
                                      "grace_s": grace[key]})
        if jobs:
            progress(f"{key[0]}: told {', '.join(signalled[key])} on {', '.join(ids)} to checkpoint "
                     f"({grace[key]:.0f} s to save and requeue themselves)")

    def drained(key: tuple[str, str]) -> bool:
        manager, ids = managers[key]
        return manager.drained(ids) >= set(ids)

    waiting = {key for key in managers if grace[key] > 0}
    ended: dict[tuple[str, str], float] = {key: 0.0 for key in managers if key not in waiting}
    said = started
    longest = max(grace.values(), default=0.0)
    for _ in range(int(longest / poll_s) + 2):  # bounded in count as well as in time
        for key in sorted(waiting):
            if drained(key) or clock() - started >= grace[key]:
                waiting.discard(key)
                ended[key] = clock() - started
        if not waiting:
            break
        if clock() - said >= PROGRESS_EVERY_S:
            said = clock()
            still = [j.job_id for k in sorted(waiting) for j in managers[k][0].jobs(managers[k][1])]
            progress(f"waiting for {', '.join(still) or 'the nodes'} to checkpoint and leave "
                     f"({said - started:.0f} of {max(grace[k] for k in waiting):.0f} s)")
        sleep(poll_s)
    for key in waiting:  # the count bound ran out before the clock: the grace is over all the same
        ended[key] = clock() - started

    out = []
    for key, (manager, ids) in managers.items():
        staying = [j.job_id for j in manager.jobs(ids)] if signalled[key] else []
        left = [j for j in signalled[key] if j not in staying]
        busy: list[str] = []
        if not drained(key):
            before_evict()
            note("intent", "evict", {"orchestrator": key[0], "stack": key[1], "nodes": list(ids), "jobs": staying})
            deadline = clock() + drain_timeout_s
            for _ in range(int(drain_timeout_s / poll_s) + 2):
                manager.evict(ids)  # idempotent: a disruption budget's 429 leaves a pod for the next round
                if drained(key) or clock() >= deadline:
                    break
                sleep(poll_s)
            busy = sorted(set(ids) - manager.drained(ids))
        drained_one = Drain(orchestrator=key[0], stack=key[1], nodes=tuple(ids), grace_s=grace[key],
                            signalled=tuple(signalled[key]), left_on_their_own=tuple(left), requeued=tuple(staying),
                            waited_s=round(ended[key], 3), still_busy=tuple(busy))
        note("result", "drain", drained_one.to_dict())
        if signalled[key]:
            progress(f"{key[0]}: left on their own after the signal: {', '.join(left) or 'none'}; "
                     f"requeued after the grace: {', '.join(staying) or 'none'}")
        if busy:
            progress(f"{key[0]}: {', '.join(busy)} still busy after {drain_timeout_s:.0f} s: replaced anyway")
        out.append(drained_one)
    return out

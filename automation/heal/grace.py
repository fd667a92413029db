"""How long a drained node's jobs get between the checkpoint signal and the requeue.

The runtime saves on USR1 at its next step boundary and then requeues its own job (rank 0,
``scontrol requeue``, lifecycle/runtime/signals.py); torchrun forwards USR1 to its workers and
kills them ``TORCHRUN_CLOSE_S`` later. A requeue sent at once reaches a job still in its step as
SIGTERM before it saved on the USR1: it then saves under Slurm's KillWait (SIGKILL after it) and
does not requeue itself. So the healer waits, bounded, for the jobs to leave on their own and
requeues only what is left.

The grace is the operator's ``Limits.checkpoint_grace_s``, or else from the jobs' own checkpoint
time: a job may publish ``checkpoint_s=<seconds one save took>`` in its comment, beside
``checkpoint=<unix time>`` (the reference job does, lifecycle/runtime/publish.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpufleet.automation.slurm_client import QueuedJob
from gpufleet.infra.errors import BadInputError

CHECKPOINT_S = re.compile(r"\bcheckpoint_s=(\d+(?:\.\d+)?)")
TORCHRUN_CLOSE_S = 30.0
"""torchrun's agent SIGKILLs its workers this long after it forwarded the signal to them."""
DEFAULT_S = TORCHRUN_CLOSE_S
"""The grace where no job publishes its checkpoint time: all torchrun leaves a worker anyway."""
FACTOR = 3.0
"""A published save time, times this: a save under load takes longer than the last one did."""
MARGIN_S = 5.0
"""The save starts at the step boundary after the signal, and the job's own requeue takes a moment."""
MIN_S = 10.0
MAX_S = 600.0
CONFIGURED_MAX_S = 3600.0
"""The most an operator's ``--checkpoint-grace`` may ask for."""


def checked_grace(configured: float | None) -> float | None:
    """An operator's ``--checkpoint-grace`` (None: from the jobs), or BadInputError (exit 2)."""
    if configured is not None and not 0 <= configured <= CONFIGURED_MAX_S:
        raise BadInputError(f"--checkpoint-grace {configured:g}: expected 0 to {CONFIGURED_MAX_S:g} seconds")
    return configured


def grace_s(jobs: Iterable[QueuedJob], configured: float | None) -> float:
    """Seconds to wait after the signal for ``jobs`` to checkpoint and leave on their own."""
    if configured is not None:
        return configured
    published = [float(m.group(1)) for job in jobs if (m := CHECKPOINT_S.search(job.comment))]
    if not published:
        return DEFAULT_S
    return min(MAX_S, max(MIN_S, FACTOR * max(published) + MARGIN_S))


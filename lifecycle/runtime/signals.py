"""Stop on request: a signal only sets a flag; the ranks agree at a step boundary, save, and exit.

Exit code contract (``REQUEUE_EXIT_CODE`` = 143, the shell's code for "terminated by SIGTERM"):
- Slurm: torchrun forwards the early-warning SIGUSR1 to the workers; after the save, rank 0 calls
  ``requeue_slurm_job`` (``scontrol requeue $SLURM_JOB_ID``), since Slurm requeues a job on its
  own only when its node fails (``--requeue``), never for an exit code. SIGTERM (``scancel``, or
  Slurm's own requeue) saves and exits without requeueing: a cancelled job stays cancelled. The
  first stop signal decides: a SIGTERM after a USR1 leaves the requeue asked for, and a USR1 after
  a SIGTERM does not turn a cancel into a requeue.
- Kubernetes: pods are stopped with SIGTERM; the rendered Job's podFailurePolicy ignores exit 143
  and disruption conditions, so they do not count against ``backoffLimit``.
- torchrun: a worker group that exits non-zero is restarted while ``--max-restarts`` lasts; a worker
  that exits 0 early would be reported as success, so stopping unfinished never exits 0.

Once the step loop is over, ``exit_on_signals`` makes SIGTERM/SIGINT end the worker (128 + signum):
the flag would be read by no one, and torchrun's SIGTERM would be ignored while the teardown waits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from types import FrameType
from typing import NoReturn

import torch
import torch.distributed as dist

from gpufleet.lifecycle.exit_codes import REQUEUE_EXIT_CODE

__all__ = ["EXIT_SIGNALS", "REQUEUE_EXIT_CODE", "STOP_SIGNALS", "StopRequest", "exit_on_signals", "exit_stopped",
           "requeue_slurm_job"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Collects SIGTERM/SIGUSR1. Install after init and checkpoint load: an early signal must not
    interrupt DCP's collectives half way."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Nothing else: we may be inside a collective or an allocator. The first stop signal
        # decides: `scancel --signal=USR1 --full` reaches torchrun's agent twice (directly and
        # through srun), and the second USR1, raised inside the agent's shutdown, makes it shut its
        # workers down again with SIGTERM, which must not undo the requeue USR1 asked for.
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def agreed(self, device: torch.device) -> bool:
        """True on every rank when any rank was signalled (one tiny all-reduce)."""
        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def requeue_slurm_job(env: Mapping[str, str] = os.environ) -> str | None:
    """Put this Slurm job back in the queue (call on one rank, after the checkpoint committed).

    Returns the job id requeued, or None outside Slurm or with GPUFLEET_REQUEUE_ON_STOP=0.
    """
    job = env.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol", path=env.get("PATH"))
    if not job or scontrol is None or env.get("GPUFLEET_REQUEUE_ON_STOP", "1") == "0":
        return None
    # Requeuing kills this allocation; the checkpoint is already committed, so that is fine.
    subprocess.run([scontrol, "requeue", job], env=dict(env), timeout=30, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return job


def exit_on_signals(signals: tuple[signal.Signals, ...] = EXIT_SIGNALS) -> None:
    """Once the step loop is over (its last checkpoint committed), a stop signal ends the worker at
    once with ``128 + signum``: there is nothing left to save, and StopRequest's flag would be read
    by no one, so torchrun's or Slurm's SIGTERM would be ignored while the teardown waits."""
    for sig in signals:
        signal.signal(sig, _exit_on_signal)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    exit_stopped(128 + signum)


def exit_stopped(code: int = REQUEUE_EXIT_CODE) -> NoReturn:
    """Leave now, once the work is committed (a stop's checkpoint, or the run's end) and the process
    group is down or abandoned: flush the standard streams and the log handlers, then ``os._exit``
    without the interpreter's finalization.

    With torch loaded that finalization takes seconds (about 4 s at load 14 on the 2-CPU test host),
    and everything after the stop waits on it: Slurm frees the node only once the step's processes
    are gone, a requeued job starts ``cred_expire`` after that, and a healer terminates the node
    only then. Nothing it would still do matters after the commit.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)

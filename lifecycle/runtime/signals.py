"""Stop on request: a signal only sets a flag; the ranks agree at a step boundary, save, and exit.

Exit code contract (``REQUEUE_EXIT_CODE`` = 143, the shell's code for "terminated by SIGTERM"):
- Slurm: the rendered batch script traps the early-warning signal, forwards SIGTERM to the step and
  runs ``scontrol requeue`` itself; a node failure requeues through ``--requeue``.
- Kubernetes: pods are stopped with SIGTERM; the rendered Job's podFailurePolicy ignores exit 143
  and disruption conditions, so they do not count against ``backoffLimit``.
- torchrun: a worker group that exits non-zero is restarted while ``--max-restarts`` lasts; a worker
  that exits 0 early would be reported as success, so stopping unfinished never exits 0.
"""

from __future__ import annotations

import signal
from types import FrameType

import torch
import torch.distributed as dist

REQUEUE_EXIT_CODE = 143
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Collects SIGTERM/SIGUSR1. Install after init and checkpoint load: an early signal must not
    interrupt DCP's collectives half way."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum  # nothing else: we may be inside a collective or an allocator

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def agreed(self, device: torch.device) -> bool:
        """True on every rank when any rank was signalled (one tiny all-reduce)."""
        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

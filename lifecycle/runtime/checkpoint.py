"""Atomic, resumable checkpoints on torch.distributed.checkpoint (DCP).

Layout under the checkpoint folder::

    step_00000040/        committed: DCP shards + .metadata
    .tmp-step_00000050/   being written (or left by a crash); never loaded, removed on start

Resume picks the newest committed directory whose ``.metadata`` loads and whose shard files are all
at least as long as the metadata says; anything else is skipped with a warning.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from gpufleet.lifecycle.runtime.storage import CheckpointStorage

log = logging.getLogger(__name__)

_COMMITTED = re.compile(r"^step_(\d{8})$")
_TMP_PREFIX = ".tmp-"


def step_name(step: int) -> str:
    return f"step_{step:08d}"


@dataclass(kw_only=True)
class CheckpointConfig:
    """How and how often the job checkpoints."""

    folder: str
    """Directory holding the checkpoints (an FSx for Lustre path on the cluster)."""
    interval: int = 10
    """Save every this many steps (and at the last step)."""
    keep_last: int = 3
    """Committed checkpoints to keep; older ones are deleted after each commit. 0 keeps all."""
    enable_async: bool = False
    """Stage to CPU memory and write in a background thread on its own gloo group; the step loop
    only pays for the staging copy."""


@dataclass(frozen=True, kw_only=True)
class SaveRecord:
    """One finished save, as reported to metrics."""

    step: int
    """Training step the checkpoint holds."""
    stall_s: float
    """Seconds the training loop was blocked by this save."""
    total_s: float
    """Seconds from the start of the save to its commit."""
    mode: str
    """``sync`` or ``async``."""


def validate(storage: CheckpointStorage, name: str) -> str | None:
    """Why checkpoint ``name`` cannot be loaded, or None when it looks complete."""
    if storage.file_size(name, ".metadata") is None:
        return "no .metadata (save never finished)"
    try:
        metadata = storage.reader(name).read_metadata()
    except Exception as error:  # a torn or garbled pickle raises anything
        return f".metadata does not load: {type(error).__name__}: {error}"
    for info in (metadata.storage_data or {}).values():
        size = storage.file_size(name, info.relative_path)
        if size is None:
            return f"{info.relative_path} is missing"
        if size < info.offset + info.length:
            return f"{info.relative_path} is truncated ({size} < {info.offset + info.length} bytes)"
    return None


class CheckpointManager:
    """Saves and restores a DCP state dict with commit-by-rename, keep-last-K and async saves.

    Collective: every rank calls ``load``, ``save``, ``poll`` and ``wait`` in the same order.
    Only rank 0 touches directory names (prepare, commit, delete).
    """

    def __init__(self, config: CheckpointConfig, storage: CheckpointStorage,
                 on_saved: Callable[[SaveRecord], None] | None = None) -> None:
        self.config = config
        self.storage = storage
        self.on_saved = on_saved
        self._distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self._distributed else 0
        self._async_group = None
        if config.enable_async and self._distributed:
            # Background saves run collectives from another thread; on their own group they never
            # interleave with the training loop's collectives.
            self._async_group = dist.new_group(backend="gloo")
        self._pending: tuple[int, Future, float, float] | None = None
        # Step of the last save started (or loaded): the same on every rank, known without I/O.
        self.last_saved_step: int | None = None

    # ---- resume -------------------------------------------------------------------------------
    def committed_steps(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self.storage.list_names() if (m := _COMMITTED.match(n)))

    def newest_loadable(self) -> int | None:
        """Newest committed step that validates (rank-local view; see ``load`` for the agreed one)."""
        for step in reversed(self.committed_steps()):
            problem = validate(self.storage, step_name(step))
            if problem is None:
                return step
            log.warning("skipping checkpoint %s: %s", step_name(step), problem)
        return None

    def _broadcast(self, value: Any) -> Any:
        if not self._distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def load(self, state: dict[str, Any]) -> int | None:
        """Restore ``state`` in place from the newest complete checkpoint; returns its step or None."""
        step = None
        if self.rank == 0:
            for name in self.storage.list_names():
                if name.startswith(_TMP_PREFIX):
                    log.warning("removing unfinished checkpoint %s", name)
                    self.storage.remove(name)
            step = self.newest_loadable()
        step = self._broadcast(step)
        if step is None:
            return None
        dcp.load(state, storage_reader=self.storage.reader(step_name(step)))
        self.last_saved_step = step
        return step

    # ---- save ---------------------------------------------------------------------------------
    def due(self, step: int, last_step: int) -> bool:
        return step == last_step or (self.config.interval > 0 and step % self.config.interval == 0)

    def save(self, step: int, state: dict[str, Any], *, force_sync: bool = False) -> None:
        """Write ``state`` as checkpoint ``step``; async unless configured off or ``force_sync``."""
        self.wait()  # one save in flight at a time
        self.last_saved_step = step
        started = time.perf_counter()
        tmp = _TMP_PREFIX + step_name(step)
        if self.rank == 0:
            self.storage.prepare(tmp)
        if self._distributed:
            dist.barrier()
        writer = self.storage.writer(tmp)
        if self.config.enable_async and not force_sync:
            future = dcp.async_save(state, storage_writer=writer, process_group=self._async_group)
            stall = time.perf_counter() - started
            self._pending = (step, future, started, stall)
            return
        dcp.save(state, storage_writer=writer)
        self._commit(step, started, time.perf_counter() - started, "sync")

    def poll(self) -> None:
        """Commit the in-flight async save if it has finished; never blocks."""
        if self._pending is not None and self._pending[1].done():
            self._finish_pending()

    def wait(self) -> None:
        """Block until the in-flight async save (if any) is written and committed."""
        if self._pending is not None:
            self._finish_pending()

    def _finish_pending(self) -> None:
        assert self._pending is not None
        step, future, started, stall = self._pending
        self._pending = None
        future.result()  # re-raises a failed background write
        self._commit(step, started, stall, "async")

    def _commit(self, step: int, started: float, stall: float, mode: str) -> None:
        # DCP gathers every rank's write result before rank 0 writes .metadata, so when rank 0's
        # save returns all shards are on disk.
        if self.rank == 0:
            self.storage.commit(_TMP_PREFIX + step_name(step), step_name(step))
            self._prune()
        if self.on_saved is not None:
            self.on_saved(SaveRecord(step=step, stall_s=stall, total_s=time.perf_counter() - started,
                                     mode=mode))

    def _prune(self) -> None:
        keep = self.config.keep_last
        if keep <= 0:
            return
        for old in self.committed_steps()[:-keep]:
            self.storage.remove(step_name(old))

"""Where checkpoints live, behind a small Protocol so tests can swap the filesystem, not the logic.

A checkpoint is a directory of DCP files. It is written under a temporary name and renamed into
place by rank 0 only after DCP has written its ``.metadata`` (the last file of a save), so a crash
mid-save never produces a directory that looks committed. ``LocalStorage`` serves a local disk or a
shared POSIX filesystem such as FSx for Lustre, where rename within a directory is atomic.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol, runtime_checkable

from torch.distributed.checkpoint import (
    FileSystemReader,
    FileSystemWriter,
    StorageReader,
    StorageWriter,
)


@runtime_checkable
class CheckpointStorage(Protocol):
    """The filesystem operations the checkpoint manager needs; names are relative to one root."""

    def list_names(self) -> list[str]:
        """Entries directly under the root (committed and temporary checkpoint directories)."""
        ...

    def prepare(self, name: str) -> None:
        """Create ``name`` empty, removing whatever a crashed earlier attempt left there."""
        ...

    def writer(self, name: str) -> StorageWriter:
        """A DCP writer for directory ``name``."""
        ...

    def reader(self, name: str) -> StorageReader:
        """A DCP reader for directory ``name``."""
        ...

    def file_size(self, name: str, relpath: str) -> int | None:
        """Size in bytes of a file inside ``name``, or None when it does not exist."""
        ...

    def commit(self, tmp_name: str, final_name: str) -> None:
        """Atomically rename a complete temporary directory to its final name (replacing it)."""
        ...

    def remove(self, name: str) -> None:
        """Delete a checkpoint directory; missing is fine."""
        ...


class LocalStorage:
    """Checkpoints on a POSIX filesystem (local disk, FSx for Lustre, EFS)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def list_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def prepare(self, name: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._path(name), ignore_errors=True)
        self._path(name).mkdir()

    def writer(self, name: str) -> StorageWriter:
        return FileSystemWriter(self._path(name), sync_files=True)

    def reader(self, name: str) -> StorageReader:
        return FileSystemReader(self._path(name))

    def file_size(self, name: str, relpath: str) -> int | None:
        try:
            return (self._path(name) / relpath).stat().st_size
        except FileNotFoundError:
            return None

    def commit(self, tmp_name: str, final_name: str) -> None:
        final = self._path(final_name)
        if final.exists():
            # Re-saving a step after a restart: move the old copy aside first so that some complete
            # copy exists at every instant.
            trash = self._path(f".trash-{final_name}")
            shutil.rmtree(trash, ignore_errors=True)
            final.rename(trash)
            self._path(tmp_name).rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            self._path(tmp_name).rename(final)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename durable before anyone trusts it
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        shutil.rmtree(self._path(name), ignore_errors=True)

"""CheckpointManager in one process: commit-by-rename, keep-last-K, skipping broken checkpoints.

The filesystem is faked only at DCP's storage boundary (a writer that dies mid-save).
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch.distributed.checkpoint import FileSystemWriter  # noqa: E402
from torch.distributed.checkpoint.api import CheckpointException  # noqa: E402

from gpufleet.lifecycle.runtime.checkpoint import (  # noqa: E402
    CheckpointConfig,
    CheckpointManager,
    step_name,
    validate,
)
from gpufleet.lifecycle.runtime.storage import CheckpointStorage, LocalStorage  # noqa: E402

pytestmark = pytest.mark.torch


def make_state(value: float, step: int) -> dict:
    return {"weights": torch.full((64,), value), "rank0": {"step": step, "rng": torch.get_rng_state()}}


def manager(root: Path, storage: CheckpointStorage | None = None, **kw) -> CheckpointManager:
    cfg = CheckpointConfig(folder=str(root), **kw)
    return CheckpointManager(cfg, storage or LocalStorage(root))


class WriterDiesMidSave(FileSystemWriter):
    """A disk that fails after the shards are written, before DCP writes .metadata."""

    def finish(self, metadata, results) -> None:
        raise OSError("node lost power")


class DyingStorage(LocalStorage):
    def writer(self, name: str):
        return WriterDiesMidSave(self.root / name)


def test_save_then_load_restores_newest_and_keeps_last_k(tmp_path):
    m = manager(tmp_path, keep_last=2)
    for step in (5, 10, 15):
        m.save(step, make_state(float(step), step))
    assert m.committed_steps() == [10, 15]
    target = make_state(0.0, 0)
    assert m.load(target) == 15
    assert torch.equal(target["weights"], torch.full((64,), 15.0))
    assert target["rank0"]["step"] == 15


def test_crash_mid_save_never_becomes_latest(tmp_path):
    manager(tmp_path).save(5, make_state(5.0, 5))
    with pytest.raises(CheckpointException, match="lost power"):
        manager(tmp_path, storage=DyingStorage(tmp_path)).save(10, make_state(10.0, 10))
    assert (tmp_path / f".tmp-{step_name(10)}").is_dir()
    m = manager(tmp_path)
    target = make_state(0.0, 0)
    assert m.load(target) == 5
    assert torch.equal(target["weights"], torch.full((64,), 5.0))
    assert not (tmp_path / f".tmp-{step_name(10)}").exists(), "unfinished save left behind"


@pytest.mark.parametrize("damage", ["truncate_shard", "garble_metadata", "delete_metadata"])
def test_damaged_latest_is_skipped(tmp_path, damage):
    m = manager(tmp_path, keep_last=0)
    m.save(5, make_state(5.0, 5))
    m.save(10, make_state(10.0, 10))
    latest = tmp_path / step_name(10)
    if damage == "truncate_shard":
        shard = next(latest.glob("*.distcp"))
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "garble_metadata":
        (latest / ".metadata").write_bytes(b"\x80\x04not a pickle")
    else:
        (latest / ".metadata").unlink()
    assert validate(LocalStorage(tmp_path), step_name(10)) is not None
    target = make_state(0.0, 0)
    assert m.load(target) == 5
    assert torch.equal(target["weights"], torch.full((64,), 5.0))


def test_no_checkpoint_loads_nothing(tmp_path):
    target = make_state(7.0, 7)
    assert manager(tmp_path / "empty").load(target) is None
    assert torch.equal(target["weights"], torch.full((64,), 7.0))


def test_async_save_holds_a_snapshot_taken_at_save_time(tmp_path):
    m = manager(tmp_path, enable_async=True)
    state = make_state(1.0, 1)
    m.save(1, state)
    state["weights"].add_(100.0)  # training goes on while the background write runs
    m.wait()
    assert m.committed_steps() == [1]
    target = make_state(0.0, 0)
    assert m.load(target) == 1
    assert torch.equal(target["weights"], torch.full((64,), 1.0))


def test_resaving_a_step_replaces_it_atomically(tmp_path):
    m = manager(tmp_path)
    m.save(5, make_state(5.0, 5))
    m.save(5, make_state(6.0, 5))
    target = make_state(0.0, 0)
    assert m.load(target) == 5
    assert torch.equal(target["weights"], torch.full((64,), 6.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_name(5)]

"""Process-group setup from the environment torchrun (or srun + torchrun) gives each worker."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True, kw_only=True)
class DistInfo:
    """Where this worker sits in the job."""

    rank: int
    """Global rank (RANK)."""
    world_size: int
    """Number of workers in the job (WORLD_SIZE)."""
    local_rank: int
    """Rank on this node (LOCAL_RANK); picks the GPU."""
    restart_count: int
    """How many times torchrun has restarted the worker group (TORCHELASTIC_RESTART_COUNT)."""
    device: torch.device
    """cuda:<local_rank> when a GPU is visible, else cpu."""
    backend: str
    """Default process-group backend: nccl on GPU (with gloo for CPU tensors), gloo on CPU."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(timeout_s: float = 300.0) -> DistInfo:
    """Initialise the default process group from RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT.

    Outside torchrun (plain ``python -m ...``) it becomes a world of one on loopback, so the same
    code path runs everywhere.
    """
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        # Async checkpoint saves and object collectives need a CPU backend beside NCCL.
        backend = "cpu:gloo,cuda:nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
        device=device,
        backend=backend,
    )


def shutdown_distributed(timeout_s: float) -> bool:
    """Barrier, then destroy the process group, giving up after ``timeout_s`` seconds.

    True when the group is down. False when the deadline passed first (a peer that never reaches
    the barrier, or a teardown stuck in the backend): the group is abandoned to a daemon thread, and
    the caller must then leave with ``os._exit`` (signals.exit_stopped): finalizing the interpreter
    around a thread stuck in the backend can block as well. An error of the barrier or the destroy
    is raised here.
    """
    if not dist.is_initialized():
        return True
    failed: list[BaseException] = []

    def tear_down() -> None:
        try:
            # Without the barrier a rank that tears down first can close sockets a peer's gloo
            # thread still reads, and that peer aborts ("terminate called without an active
            # exception").
            dist.barrier()
            dist.destroy_process_group()
        except BaseException as error:  # re-raised in the caller's thread
            failed.append(error)

    # In its own thread so that the caller waits in Python (Thread.join), where signal handlers
    # run; a main thread blocked inside gloo never runs one.
    worker = threading.Thread(target=tear_down, name="gpufleet-teardown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False
    if failed:
        raise failed[0]
    return True

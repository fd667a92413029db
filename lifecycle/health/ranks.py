"""The measurement run itself: one process per device (rank), all ranks in one process group.

Intra-node: ``measure_node`` spawns the ranks on this host (nccl on GPUs, gloo on the CPU).
Multi-node: the same ``rank_main`` runs under torchrun on every node of a pool
(``torchrun ... -m gpufleet.lifecycle.health.ranks --out FILE``), with the rendezvous torchrun provides.
Rank 0 writes one JSON document: per-rank figures and the all-reduce figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gpufleet.lifecycle.health import measure
from gpufleet.lifecycle.health.expected import ModelExpectation, for_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_rank(device: torch.device, exp: ModelExpectation, *, with_compute: bool = True) -> dict:
    """This rank's own figures: GEMM per dtype, memory copy, host<->device copies on a GPU."""
    figures: dict[str, float] = {}
    if not with_compute:
        return figures
    for dtype in exp.dtypes:
        figures[f"gemm_{dtype}"] = measure.gemm_tflops(device, dtype, exp.gemm_n, iters=exp.iters)
    figures["memory_bandwidth"] = measure.copy_gbps(device, exp.copy_bytes, iters=exp.iters)
    if device.type == "cuda":
        figures["h2d_bandwidth"] = measure.host_device_gbps(device, 256 << 20, "h2d", iters=exp.iters)
        figures["d2h_bandwidth"] = measure.host_device_gbps(device, 256 << 20, "d2h", iters=exp.iters)
    return figures


def rank_main(rank: int, world: int, local_rank: int, backend: str, init_method: str, model: str,
              out: str, with_compute: bool = True) -> None:
    """Body of every rank: init the group, measure, all-reduce at each size, rank 0 writes ``out``."""
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        exp = for_model(model)
        figures = measure_rank(device, exp, with_compute=with_compute)
        allreduce = [
            dataclasses.asdict(measure.allreduce(device, size, iters=exp.allreduce_iters.get(size, exp.iters)))
            for size in exp.allreduce_sizes
        ]
        gathered: list[dict | None] = [None] * world
        dist.all_gather_object(gathered, {"rank": rank, "host": socket.gethostname(), "device": str(device),
                                          "figures": figures})
        if rank == 0:
            doc = {"world": world, "backend": backend, "model": model, "ranks": gathered, "allreduce": allreduce}
            tmp = Path(out).with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(out)
    finally:
        dist.destroy_process_group()


def _spawned(local_rank: int, world: int, backend: str, init_method: str, model: str, out: str) -> None:
    rank_main(local_rank, world, local_rank, backend, init_method, model, out)


class MeasurementFailed(RuntimeError):
    """A rank died or the run passed its deadline; the message says which."""


def measure_node(model: str, nprocs: int, backend: str, out: Path, timeout_s: float = 600.0) -> dict:
    """Spawn ``nprocs`` ranks on this host and return rank 0's document."""
    init = f"tcp://127.0.0.1:{_free_port()}"
    context = mp.start_processes(_spawned, args=(nprocs, backend, init, model, str(out)), nprocs=nprocs,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise MeasurementFailed(f"measurement ranks still running after {timeout_s:.0f} s")
    except mp.ProcessRaisedException as err:
        raise MeasurementFailed(f"a measurement rank failed: {str(err).strip().splitlines()[-1]}") from None
    except mp.ProcessExitedException as err:
        raise MeasurementFailed(f"a measurement rank exited: {err}") from None
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Entry point under torchrun (multi-node all-reduce of the deep tier)."""
    parser = argparse.ArgumentParser(prog="python -m gpufleet.lifecycle.health.ranks")
    parser.add_argument("--model", default="cpu", help="row of the expected table (sizes, iterations)")
    parser.add_argument("--backend", default="nccl" if torch.cuda.is_available() else "gloo")
    parser.add_argument("--out", required=True, help="JSON file rank 0 writes")
    parser.add_argument("--allreduce-only", action="store_true", help="skip GEMM and copies")
    args = parser.parse_args(argv)
    rank_main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
              args.backend, "env://", args.model, args.out, with_compute=not args.allreduce_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())

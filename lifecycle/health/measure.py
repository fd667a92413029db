"""Torch measurements on one device: GEMM throughput, memory copy, host<->device copy, all-reduce.

Each function times real work and returns a figure; the verdicts live elsewhere. Timing: CUDA
events on a GPU, ``perf_counter`` after a synchronize on the CPU. Throughput is the best of
``trials`` trials: other work on the machine only ever slows a trial down, so the best one is the
closest to what the device can do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
Matmul = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Wall time of ``iters`` calls, measured around a device synchronize."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    _sync(device)
    begin = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return time.perf_counter() - begin


def best_rate(work: float, fn: Callable[[], object], device: torch.device, *, iters: int, trials: int,
              warmup: int = 2) -> float:
    """``work`` units per second per call, the best over ``trials`` timed runs after a warmup."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = 0.0
    for _ in range(trials):
        seconds = _seconds(fn, device, iters)
        best = max(best, work * iters / seconds)
    return best


def gemm_tflops(device: torch.device, dtype: str, n: int, *, iters: int = 10, trials: int = 3,
                matmul: Matmul = torch.matmul) -> float:
    """Dense n x n x n matrix multiply throughput in TFLOP/s (2 n^3 flops per product).

    fp32 runs as true FP32 (TF32 off), as the expected table assumes.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype], generator=gen)
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype], generator=gen)
    out = torch.empty(n, n, device=device, dtype=DTYPES[dtype])

    def step() -> None:
        out.copy_(matmul(a, b)) if matmul is not torch.matmul else torch.matmul(a, b, out=out)

    return best_rate(2.0 * n**3 / 1e12, step, device, iters=iters, trials=trials)


def copy_gbps(device: torch.device, nbytes: int, *, iters: int = 10, trials: int = 3) -> float:
    """Device memory bandwidth of a buffer copy, GB/s counting bytes read plus bytes written
    (the convention of CUDA's bandwidthTest for device-to-device copies)."""
    src = torch.ones(nbytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    return best_rate(2.0 * src.numel() * 4 / 1e9, lambda: dst.copy_(src), device, iters=iters, trials=trials)


def host_device_gbps(device: torch.device, nbytes: int, direction: str, *, iters: int = 10, trials: int = 3) -> float:
    """Pinned host <-> GPU copy bandwidth in GB/s; ``direction`` is ``h2d`` or ``d2h``."""
    if device.type != "cuda":
        raise ValueError("host-device copies need a GPU")
    host = torch.ones(nbytes // 4, dtype=torch.float32).pin_memory()
    dev = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    if direction == "h2d":
        return best_rate(nbytes / 1e9, lambda: dev.copy_(host, non_blocking=True), device, iters=iters, trials=trials)
    return best_rate(nbytes / 1e9, lambda: host.copy_(dev, non_blocking=True), device, iters=iters, trials=trials)


@dataclass(frozen=True, kw_only=True)
class AllReduceFigure:
    """One message size, as nccl-tests reports it."""

    nbytes: int
    seconds: float
    """Time of one all-reduce (best trial, slowest rank)."""
    algbw_gbps: float
    """nbytes / seconds."""
    busbw_gbps: float
    """algbw * 2 (n - 1) / n: comparable across rank counts and with the link's speed."""


def bus_bandwidth(algbw: float, world: int) -> float:
    return algbw * 2.0 * (world - 1) / world if world > 1 else 0.0


def allreduce(device: torch.device, nbytes: int, *, iters: int, trials: int = 3, warmup: int = 2,
              group: object | None = None) -> AllReduceFigure:
    """Sum-all-reduce of an fp32 buffer across the process group (every rank must call it)."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    buf = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
    for _ in range(warmup):
        dist.all_reduce(buf, group=group)
    _sync(device)
    best = float("inf")
    for _ in range(trials):
        dist.barrier(group=group)
        seconds = _seconds(lambda: dist.all_reduce(buf, group=group), device, iters) / iters
        slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX, group=group)
        best = min(best, float(slowest.item()))
    algbw = buf.numel() * 4 / best / 1e9
    return AllReduceFigure(nbytes=buf.numel() * 4, seconds=best, algbw_gbps=algbw, busbw_gbps=bus_bandwidth(algbw, world))

"""What a healthy device of each model measures, and how far below that a check warns or fails.

Peaks are the vendor's dense (no sparsity) figures for the SXM / AWS variant; ``*_efficiency`` is
the fraction of peak a large, well-shaped measurement reaches on a healthy card (cuBLAS GEMM at
n=8192, a device-to-device copy of 1 GiB). The ``cpu`` row is scaled to the build machines
(measured there: see docs/health.md), so the same code paths run and are checked without a GPU.
Figures marked "estimate" were not measured on that model by us; multi-node figures are estimates
for the instance's EFA bandwidth (p5 3200 Gbps, p4d 400 Gbps) and should be tuned on the first pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class ModelExpectation:
    """One device model's expected performance and the thresholds of its verdicts."""

    model: str
    gemm_peak_tflops: Mapping[str, float]
    """Dense peak by dtype (bf16, fp16, fp32 without TF32)."""
    gemm_efficiency: float
    memory_peak_gbps: float
    """Memory bandwidth peak (HBM for GPUs), GB/s."""
    memory_efficiency: float
    host_device_gbps: float | None
    """Pinned host<->device copy per direction, GB/s, with every GPU of the node copying at once
    (estimate: PCIe Gen5 x16 gives ~50 alone, Gen4 ~25); None: no such copy (CPU)."""
    allreduce_busbw_gbps: float
    """Typical intra-node all-reduce bus bandwidth at the largest message size (nccl-tests busbw)."""
    multinode_busbw_gbps: float
    """Typical all-reduce bus bandwidth across nodes of a pool (EFA), largest message size."""
    warn_fraction: float = 0.85
    """WARN below this fraction of the expected figure."""
    fail_fraction: float = 0.70
    """FAIL below this fraction."""
    straggler_warn_ratio: float = 0.92
    """A device below this ratio to the median of its peers (and an outlier by MAD) is a straggler."""
    straggler_fail_ratio: float = 0.80
    dtypes: tuple[str, ...] = ("bf16", "fp16", "fp32")
    gemm_n: int = 8192
    copy_bytes: int = 1024 * MB
    allreduce_sizes: tuple[int, ...] = (1 * MB, 16 * MB, 64 * MB, 256 * MB, 1024 * MB)
    iters: int = 20
    """Timed iterations per trial (GEMM, copies)."""
    allreduce_iters: Mapping[int, int] = field(default_factory=dict)
    """Iterations per all-reduce size; default ``iters``."""

    def gemm_tflops(self, dtype: str) -> float:
        return self.gemm_peak_tflops[dtype] * self.gemm_efficiency

    @property
    def memory_gbps(self) -> float:
        return self.memory_peak_gbps * self.memory_efficiency


_GPU = dict(gemm_efficiency=0.72, memory_efficiency=0.80)

EXPECTED: dict[str, ModelExpectation] = {
    m.model: m for m in (
        ModelExpectation(model="H100", gemm_peak_tflops={"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
                         memory_peak_gbps=3350, host_device_gbps=40, allreduce_busbw_gbps=450,
                         multinode_busbw_gbps=300, **_GPU),
        ModelExpectation(model="H200", gemm_peak_tflops={"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
                         memory_peak_gbps=4800, host_device_gbps=40, allreduce_busbw_gbps=460,
                         multinode_busbw_gbps=300, **_GPU),
        ModelExpectation(model="A100", gemm_peak_tflops={"bf16": 312, "fp16": 312, "fp32": 19.5},
                         memory_peak_gbps=1555, host_device_gbps=20, allreduce_busbw_gbps=230,
                         multinode_busbw_gbps=40, **_GPU),
        # estimate: B200 all-reduce and host copies not measured by us.
        ModelExpectation(model="B200", gemm_peak_tflops={"bf16": 2250, "fp16": 2250, "fp32": 75},
                         memory_peak_gbps=8000, host_device_gbps=40, allreduce_busbw_gbps=700,
                         multinode_busbw_gbps=300, **_GPU),
        # estimate: no NVLink; all-reduce goes over PCIe.
        ModelExpectation(model="L40S", gemm_peak_tflops={"bf16": 362, "fp16": 362, "fp32": 91.6},
                         memory_peak_gbps=864, host_device_gbps=20, allreduce_busbw_gbps=20,
                         multinode_busbw_gbps=20, **_GPU),
        # The build machines: 2 vCPUs shared by several users, ranks are processes, all-reduce is gloo.
        # Measured there: fp32 GEMM 30-160 GFLOP/s per rank, copy ~10-12 GB/s, busbw ~1 GB/s at 64 MB.
        # Wide thresholds: other users' load moves these figures by 2-10x (a node measured at a busy
        # moment must not be failed as a straggler of its pool: fail ratio 0.25).
        ModelExpectation(model="cpu", gemm_peak_tflops={"fp32": 0.15}, gemm_efficiency=1.0,
                         memory_peak_gbps=12, memory_efficiency=1.0, host_device_gbps=None,
                         allreduce_busbw_gbps=1.0, multinode_busbw_gbps=0.5, warn_fraction=0.30, fail_fraction=0.03,
                         straggler_warn_ratio=0.60, straggler_fail_ratio=0.25, dtypes=("fp32",), gemm_n=512,
                         copy_bytes=64 * MB, allreduce_sizes=(1 * MB, 16 * MB, 64 * MB), iters=5,
                         allreduce_iters={1 * MB: 20, 16 * MB: 5, 64 * MB: 3}),
    )
}


def for_model(model: str) -> ModelExpectation:
    """The row of a model (``H100``); KeyError naming the known models."""
    try:
        return EXPECTED[model]
    except KeyError:
        raise KeyError(f"no expected performance for {model!r}; known: {', '.join(sorted(EXPECTED))}") from None

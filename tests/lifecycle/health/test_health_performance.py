"""Performance and deep tiers measured for real on the CPU: 2 gloo ranks, torchrun across 2 'nodes'."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpufleet.lifecycle.health import deep
from gpufleet.lifecycle.health.expected import for_model
from gpufleet.lifecycle.health.measure import bus_bandwidth
from gpufleet.lifecycle.health.performance import run_performance, verdicts
from gpufleet.lifecycle.health.results import Status
from gpufleet.lifecycle.health.settings import HealthSettings

pytestmark = pytest.mark.torch


def test_busbw_follows_nccl_tests():
    assert bus_bandwidth(100.0, 8) == pytest.approx(175.0)
    assert bus_bandwidth(1.0, 2) == pytest.approx(1.0)


def test_cpu_node_measures_every_rank_and_the_allreduce():
    pytest.importorskip("torch")
    settings = HealthSettings.for_instance_type(None, node="cpu-a")
    results, extra = run_performance(settings, cpu_ranks=2, timeout_s=300)
    by = {(r.check, r.device): r for r in results}
    for rank in ("rank0", "rank1"):
        assert by[("gemm_fp32", rank)].measured > 0 and by[("gemm_fp32", rank)].unit == "TFLOP/s"
        assert by[("memory_bandwidth", rank)].measured > 0
    doc = extra["performance"]
    assert doc["world"] == 2 and doc["backend"] == "gloo"
    assert [f["nbytes"] for f in doc["allreduce"]] == [1 << 20, 16 << 20, 64 << 20]
    for figure in doc["allreduce"]:
        assert figure["busbw_gbps"] == pytest.approx(figure["algbw_gbps"] * 2 * (2 - 1) / 2)
    busbw = by[("allreduce_busbw", None)]
    assert busbw.measured == pytest.approx(doc["allreduce"][-1]["busbw_gbps"]) and busbw.status is not Status.SKIP
    assert by[("h2d_bandwidth", None)].status is Status.SKIP


def test_slow_gpu_document_fails_against_the_h100_table():
    doc = {"world": 8, "ranks": [{"rank": i, "figures": {"gemm_bf16": 700.0 if i != 4 else 430.0,
                                                         "memory_bandwidth": 2700.0}} for i in range(8)],
           "allreduce": [{"nbytes": 1 << 30, "busbw_gbps": 455.0, "algbw_gbps": 260.0, "seconds": 0.004}]}
    results = verdicts(doc, for_model("H100"), device_label="cuda:")
    failed = {(r.check, r.device) for r in results if r.status is Status.FAIL}
    assert failed == {("gemm_bf16", "cuda:4"), ("straggler", "cuda:4")}
    assert {r.check: r.status for r in results if r.device is None}["allreduce_busbw"] is Status.PASS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_allreduce_across_two_nodes_with_torchrun():
    pytest.importorskip("torch")
    port = _free_port()
    specs = [deep.MultiNodeSpec(nnodes=2, node_rank=r, master_addr="127.0.0.1", master_port=port, timeout_s=240)
             for r in (0, 1)]
    with ThreadPoolExecutor(2) as pool:
        head, other = pool.map(deep.check_multinode_allreduce, specs)
    assert head.status is not Status.FAIL, head.detail
    assert head.measured > 0 and "over 2 ranks on 2 nodes" in head.detail
    assert other.status is Status.PASS

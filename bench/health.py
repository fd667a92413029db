"""Health check figures on this machine: what the performance tier measures, and what the tiers cost.

    .venv/bin/python bench/health.py [--repeats 3] [--ranks 2]

Prints, per repeat and as median [min-max]: GEMM throughput per rank (fp32 on the CPU; bf16/fp16/
fp32 and HBM / host-device copies on GPUs), memory copy bandwidth per rank, all-reduce bus
bandwidth at each message size, the same GEMM in one process alone (the baseline of this run),
and the wall time of the quick and performance tiers. On a GPU the figures are also given as a
fraction of the card's peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gpufleet.lifecycle.health import measure
from gpufleet.lifecycle.health.expected import for_model
from gpufleet.lifecycle.health.node_check import check_node
from gpufleet.lifecycle.health.performance import node_devices
from gpufleet.lifecycle.health.ranks import measure_node
from gpufleet.lifecycle.health.results import Tier
from gpufleet.lifecycle.health.settings import HealthSettings


def spread(values: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    v = [x * scale for x in values]
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=2, help="ranks on a CPU host")
    args = parser.parse_args()
    settings = HealthSettings.from_environment(instance_type=None) if not torch.cuda.is_available() \
        else HealthSettings.from_environment()
    backend, nprocs, model, problem = node_devices(settings, args.ranks)
    if problem:
        raise SystemExit(problem)
    exp = for_model(model)
    gpu = backend == "nccl"
    load = os.getloadavg()
    print(f"model {model}, {nprocs} ranks ({backend}), torch {torch.__version__}, {os.cpu_count()} CPUs,\n"
          f"load average {load[0]:.1f} (other users' work slows every figure)")
    per_check: dict[str, list[float]] = {}
    busbw: dict[int, list[float]] = {}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            begin = time.monotonic()
            doc = measure_node(model, nprocs, backend, Path(tmp) / "r.json", timeout_s=600)
            took = time.monotonic() - begin
        for entry in doc["ranks"]:
            for check, value in entry["figures"].items():
                per_check.setdefault(check, []).append(value)
        for f in doc["allreduce"]:
            busbw.setdefault(f["nbytes"], []).append(f["busbw_gbps"])
        print(f"repeat {repeat + 1}: {took:.1f} s")
        for e in doc["ranks"]:
            print(f"  rank{e['rank']} " + " ".join(
                f"{k}={v * (1 if gpu or not k.startswith('gemm') else 1000):.4g}" for k, v in e["figures"].items()))
        print("  busbw " + " ".join(f"{f['nbytes'] >> 20}MiB={f['busbw_gbps']:.3f}" for f in doc["allreduce"]))
    print("\nper rank, median [min-max] over repeats and ranks:")
    for check, values in per_check.items():
        if check.startswith("gemm"):
            unit, scale = ("TFLOP/s", 1.0) if gpu else ("GFLOP/s", 1000.0)
        else:
            unit, scale = "GB/s", 1.0
        line = f"  {check:<17} {spread(values, scale)} {unit}"
        if gpu and check.startswith("gemm"):
            line += f"  = {statistics.median(values) / exp.gemm_peak_tflops[check[5:]]:.0%} of peak"
        if gpu and check == "memory_bandwidth":
            line += f"  = {statistics.median(values) / exp.memory_peak_gbps:.0%} of peak"
        print(line)
    for nbytes, values in sorted(busbw.items()):
        print(f"  all-reduce busbw {nbytes >> 20:>4} MiB  {spread(values, fmt='{:.3f}')} GB/s"
              f"  (spread {(max(values) - min(values)) / statistics.median(values):.0%})")
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    alone = [measure.gemm_tflops(device, exp.dtypes[-1], exp.gemm_n, iters=exp.iters) for _ in range(args.repeats)]
    per_rank = statistics.median(per_check[f"gemm_{exp.dtypes[-1]}"])
    scale = 1.0 if gpu else 1000.0
    print(f"\nbaseline: {exp.dtypes[-1]} GEMM in one process alone {spread(alone, scale)} "
          f"{'TFLOP/s' if gpu else 'GFLOP/s'};\nper rank with {nprocs} ranks = "
          f"{per_rank / statistics.median(alone):.2f} x the process alone")
    for tiers in ((Tier.QUICK,), (Tier.QUICK, Tier.PERFORMANCE)):
        report = check_node(settings, tiers, cpu_ranks=args.ranks)
        print(f"tiers {'+'.join(t.value for t in tiers)}: {report.duration_s:.2f} s, {report.status.value}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

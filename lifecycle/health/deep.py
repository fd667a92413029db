"""Deep tier (on demand, tens of minutes): DCGM diagnostics and the all-reduce across a pool's nodes.

The multi-node all-reduce is the same ``ranks.rank_main`` as the intra-node one, started by torchrun
on every node with a static rendezvous (node rank 0 hosts the store), e.g. from
``srun python -m gpufleet.lifecycle.health --tiers deep --nnodes $SLURM_NNODES --node-rank $SLURM_NODEID
--master-addr $head``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpufleet.lifecycle.health import dcgm
from gpufleet.lifecycle.health.expected import for_model
from gpufleet.lifecycle.health.performance import grade
from gpufleet.lifecycle.health.results import Action, CheckResult, Status, Tier
from gpufleet.lifecycle.health.runner import CommandRunner

# Level 3 takes ~15-30 min on 8 GPUs, level 4 ~1-2 h.
DCGM_TIMEOUT_S = {1: 120, 2: 600, 3: 2400, 4: 7200}


def check_dcgm(runner: CommandRunner, level: int = 3) -> list[CheckResult]:
    if runner.which("dcgmi") is None:
        return [CheckResult(check="dcgm_diag", status=Status.SKIP, tier=Tier.DEEP, detail="dcgmi is not installed")]
    out = runner.run(dcgm.command(level), DCGM_TIMEOUT_S.get(level, 7200))
    try:
        report = dcgm.parse_diag_json(out.stdout)
    except dcgm.DiagParseError as err:
        return [CheckResult(check="dcgm_diag", status=Status.FAIL, tier=Tier.DEEP, action=Action.MONITOR,
                            detail=f"dcgmi diag -r {level}: {out.describe() if not out.ok else err}")]
    results = []
    for o in report.outcomes:
        failing = o.status.lower() == "fail"
        results.append(CheckResult(
            check="dcgm_diag", status=Status.FAIL if failing else Status.WARN, tier=Tier.DEEP,
            action=Action.ISOLATE if failing else Action.MONITOR, device=f"gpu{o.gpu}" if o.gpu else None,
            detail=f"level {level} {o.category}/{o.test}{' GPU ' + o.gpu if o.gpu else ''}: {o.message}"))
    if not results:
        results.append(CheckResult(check="dcgm_diag", status=Status.PASS, tier=Tier.DEEP,
                                   detail=f"level {level}: {report.tests_run} tests, none failed (DCGM {report.version})"))
    return results


@dataclass(frozen=True, kw_only=True)
class MultiNodeSpec:
    """How this node joins the pool-wide all-reduce."""

    nnodes: int
    node_rank: int
    master_addr: str
    """Address of node rank 0, which hosts the rendezvous store."""
    master_port: int = 29512
    nproc_per_node: int = 1
    model: str = "cpu"
    timeout_s: float = 900.0


def torchrun_argv(spec: MultiNodeSpec, out: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={spec.nnodes}", f"--node-rank={spec.node_rank}",
            f"--nproc-per-node={spec.nproc_per_node}", f"--master-addr={spec.master_addr}",
            f"--master-port={spec.master_port}", "-m", "gpufleet.lifecycle.health.ranks", "--model", spec.model,
            "--allreduce-only", "--out", str(out)]


def check_multinode_allreduce(spec: MultiNodeSpec) -> CheckResult:
    """Run this node's share of the pool all-reduce; node rank 0 grades the bus bandwidth."""
    exp = for_model(spec.model)
    with tempfile.TemporaryDirectory(prefix="gpufleet-allreduce-") as tmp:
        out = Path(tmp) / "allreduce.json"
        try:
            done = subprocess.run(torchrun_argv(spec, out), capture_output=True, text=True, timeout=spec.timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            return CheckResult(check="allreduce_multinode", status=Status.FAIL, tier=Tier.DEEP, action=Action.ISOLATE,
                               detail=f"all-reduce across {spec.nnodes} nodes did not finish in {spec.timeout_s:.0f} s")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            return CheckResult(check="allreduce_multinode", status=Status.FAIL, tier=Tier.DEEP, action=Action.ISOLATE,
                               detail=f"torchrun exited {done.returncode}: {last}")
        if spec.node_rank != 0:
            return CheckResult(check="allreduce_multinode", status=Status.PASS, tier=Tier.DEEP,
                               detail=f"took part in the all-reduce across {spec.nnodes} nodes (node rank 0 grades it)")
        doc = json.loads(out.read_text())
    largest = max(doc["allreduce"], key=lambda f: f["nbytes"])
    return grade("allreduce_multinode", largest["busbw_gbps"], exp.multinode_busbw_gbps, exp, tier=Tier.DEEP,
                 unit="GB/s", what=f"all-reduce busbw at {largest['nbytes'] >> 20} MiB over {doc['world']} ranks "
                 f"on {spec.nnodes} nodes")

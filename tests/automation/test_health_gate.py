"""The health gate with LocalProbe: each 'node' is this host running the real entry point, its
devices given at the boundary (fake nvidia-smi / fi_info / dmesg first on its PATH)."""

from __future__ import annotations

import os

import pytest

from gpufleet.automation.health.gate import GateReport, gate
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.lifecycle.health.results import NodeReport, Status, Tier
from tests.lifecycle.health.fixture_runner import fake_tools


def p5_env(tools) -> dict[str, str]:
    return {"PATH": f"{tools}:{os.environ['PATH']}", "GPUFLEET_INSTANCE_TYPE": "p5.48xlarge"}


def test_gate_fails_only_the_node_with_a_double_bit_error(tmp_path):
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp_path / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    probe = LocalProbe(env=p5_env(healthy), env_by_node={"i-0b": p5_env(dbe)}, timeout_s=120)
    seen: list[str] = []
    report = gate(["i-0a", "i-0b", "i-0c"], probe, ("quick",), progress=lambda r: seen.append(r.node))
    assert isinstance(report, GateReport) and not report.ok
    assert report.passed == ("i-0a", "i-0c") and seen == ["i-0a", "i-0b", "i-0c"]
    (reason,) = report.failed["i-0b"]
    assert reason.startswith("ecc: GPU 00000000:86:00.0: 2 volatile uncorrectable")
    node_a = report.nodes[0].report
    assert node_a.instance_type == "p5.48xlarge" and {r.check for r in node_a.results} >= {"gpu_count", "efa", "ecc"}


def test_unreachable_node_fails_without_stopping_the_gate(tmp_path):
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    probe = LocalProbe(env=p5_env(healthy), python=str(tmp_path / "no-such-python"), timeout_s=30)
    report = gate(["i-0a"], probe, (Tier.QUICK,))
    assert report.failed["i-0a"][0].startswith("probe: probe raised FileNotFoundError")


@pytest.mark.torch
def test_performance_tier_through_the_gate_on_this_host():
    pytest.importorskip("torch")
    report = gate(["i-0cpu"], LocalProbe(timeout_s=300), ("quick", "performance"))
    node = report.nodes[0].report
    assert isinstance(node, NodeReport) and node.gpu_model == "cpu"
    checks = {(r.check, r.device): r for r in node.results}
    assert checks[("gemm_fp32", "rank0")].measured > 0 and checks[("allreduce_busbw", None)].status is not Status.SKIP
    assert "extra" not in node.to_dict() or node.extra == {}  # --brief keeps SSM output small
    assert report.ok, report.summary


class RecordedNodes:
    """Nodes at the node boundary: each answers with the report its checks produced (GEMM figures)."""

    max_parallel = 1

    def __init__(self, gemm: dict[str, float]) -> None:
        self.gemm = gemm

    def probe(self, node, tiers):
        from gpufleet.lifecycle.health.results import CheckResult

        results = tuple(CheckResult(check="gemm_bf16", status=Status.PASS, tier=Tier.PERFORMANCE,
                                    measured=self.gemm[node], unit="TFLOP/s", device=f"gpu{i}") for i in range(8))
        return NodeReport(node=node, tiers=tuple(tiers), results=results, instance_type="p5.48xlarge", gpu_model="H100")


@pytest.mark.parametrize(("slow", "fail_pct", "fails"), [
    (0.91, None, False),  # the catalog's H100 ratios: 9 % below the pool is a warning
    (0.91, 8, True),      # the PHI account's 8 %: it fails the gate
    (0.92, 8, True),      # exactly 8 % below fails too
    (0.93, 8, False),
])
def test_the_accounts_straggler_threshold_decides(slow, fail_pct, fails):
    gemm = {"i-0a": 800.0, "i-0b": 802.0, "i-0c": 798.0, "i-0d": 800.0 * slow}
    report = gate(list(gemm), RecordedNodes(gemm), ("quick", "performance"), straggler_fail_pct=fail_pct)
    assert ("i-0d" in report.failed) is fails, report.pool_results
    assert set(report.failed) <= {"i-0d"}
    if fails:
        assert report.failed["i-0d"][0].startswith("straggler: gemm_bf16 on i-0d")

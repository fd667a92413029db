"""On EKS a newcomer that fails its gate ends its replacement ROLLED_BACK with ``gate_failed`` and
keeps its hold (the Slurm healer's drain-and-replace of such a newcomer has no EKS counterpart)."""

from __future__ import annotations

import os

from gpufleet.automation.heal.kube_service import default_kube, request_replace
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.rebalance.state import MoveState
from tests.automation.heal.eks_fleet import HOLD, SeenProbe
from tests.automation.heal.test_heal_eks import transitions
from tests.lifecycle.health.fixture_runner import fake_tools


def test_a_newcomer_failing_its_gate_stays_held_and_the_operation_says_why(eks, tmp_path):
    faulty = fake_tools(tmp_path / "faulty", "nvidia_smi_q_h100x8_remap_failed.xml")
    eks.probe = SeenProbe(LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": eks.ref.group.instance_type,
                                          "PATH": f"{faulty}:{os.environ['PATH']}"}, timeout_s=120), eks.kube)
    request_replace(default_kube("inference"), "node-a")
    report = eks.heal()
    assert report.ok, report.failures
    (op,) = heal_ops(eks.journal)
    assert op.state is MoveState.ROLLED_BACK and "row remapping failed" in op.body["gate_failed"], op.body
    assert transitions(eks.journal, op.op_id)[-2:] == ["ROLLING_BACK", "ROLLED_BACK"]
    (fresh,) = op.body["replaced_by"]
    held = eks.kube.nodes[f"ip-{fresh}"]["spec"]["taints"]
    assert [t for t in held if t["key"] == HOLD["key"]], held

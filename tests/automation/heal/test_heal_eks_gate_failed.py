"""On EKS a newcomer that fails its gate ends its replacement ROLLED_BACK with ``gate_failed``, keeps
the gate's hold and is labelled ``gpufleet.io/gate-failed=<operation>``: the next pass replaces it
through the same path and budget, and the last of a run of them is reported instead (the run read
from the journal, heal/gate_failures.py). Every patch the healer sends is validated against the
Kubernetes schema by the fake."""

from __future__ import annotations

import os

from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.kube_observe import GATE_FAILED_LABEL
from gpufleet.automation.heal.kube_service import default_kube, request_replace
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.rebalance.state import MoveState
from tests.automation.heal.eks_fleet import HOLD, SeenProbe
from tests.automation.heal.test_heal_eks import transitions
from tests.lifecycle.health.fixture_runner import fake_tools

ROOMY = HealBudget(per_group_per_hour=5, per_pool_per_hour=5, gate_failures_in_a_row=2)


def faulty_probe(eks, tmp_path):
    faulty = fake_tools(tmp_path / "faulty", "nvidia_smi_q_h100x8_remap_failed.xml")
    return SeenProbe(LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": eks.ref.group.instance_type,
                                     "PATH": f"{faulty}:{os.environ['PATH']}"}, timeout_s=120), eks.kube)


def ops_by_start(eks):
    return sorted(heal_ops(eks.journal), key=lambda o: o.op_id)


def test_a_newcomer_failing_its_gate_stays_held_labelled_with_its_operation(eks, tmp_path):
    healthy, eks.probe = eks.probe, faulty_probe(eks, tmp_path)
    request_replace(default_kube("inference"), "node-a")
    report = eks.heal(budget=ROOMY)
    assert report.ok, report.failures
    (op,) = heal_ops(eks.journal)
    assert op.state is MoveState.ROLLED_BACK and "row remapping failed" in op.body["gate_failed"], op.body
    assert transitions(eks.journal, op.op_id)[-2:] == ["ROLLING_BACK", "ROLLED_BACK"]
    (fresh,) = op.body["replaced_by"]
    node = eks.kube.nodes[f"ip-{fresh}"]
    assert [t for t in node["spec"]["taints"] if t["key"] == HOLD["key"]], node["spec"]
    assert node["metadata"]["labels"][GATE_FAILED_LABEL] == op.op_id

    # The next pass, the newcomer's replacement passing: the failed one is replaced and gone.
    eks.probe = healthy
    report = eks.heal(budget=ROOMY)
    assert report.ok, report.failures
    first, second = ops_by_start(eks)
    assert first.op_id == op.op_id
    assert second.body["instance_id"] == fresh and "gate_failed" in second.body["signals"], second.body
    assert second.state is MoveState.DONE, (second.state, second.body)
    (newest,) = second.body["replaced_by"]
    assert fresh not in eks.in_service() and newest in eks.in_service()
    admitted = eks.kube.nodes[f"ip-{newest}"]
    assert not [t for t in admitted["spec"]["taints"] if t["key"] == HOLD["key"]]
    assert GATE_FAILED_LABEL not in admitted["metadata"]["labels"]


def test_a_run_of_failed_newcomers_is_reported_not_replaced_again(eks, tmp_path):
    eks.probe = faulty_probe(eks, tmp_path)
    request_replace(default_kube("inference"), "node-a")
    assert eks.heal(budget=ROOMY).ok
    assert eks.heal(budget=ROOMY).ok  # the first failed newcomer replaced; its newcomer fails too
    first, second = ops_by_start(eks)
    assert second.body["instance_id"] == first.body["replaced_by"][0]
    assert second.state is MoveState.ROLLED_BACK and second.body.get("gate_failed"), second.body
    (last,) = second.body["replaced_by"]
    before = eks.in_service()

    report = eks.heal(budget=ROOMY)
    assert report.ok and not report.operations, report.operations
    assert len(heal_ops(eks.journal)) == 2
    (d,) = [d for d in report.plan.decisions if d.instance_id == last]
    assert d.action is HealAction.LEAVE and d.wanted is HealAction.REPLACE
    assert d.reason.startswith("held: 2 newcomers in a row failed their gate (limit 2)"), d.reason
    assert any("2 newcomers in a row failed their gate" in p for p in report.plan.patterns), report.plan.patterns
    assert eks.in_service() == before

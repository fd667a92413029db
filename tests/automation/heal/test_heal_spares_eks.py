"""Hot spares on EKS against the Kubernetes fake (every object it receives validated against the
official schemas) with the sandbox's Auto Scaling groups (IAM enforced): a spare is a gated node
cordoned and tainted ``gpufleet.io/spare=true:NoSchedule``; a replacement swaps it in (taint
lifted, uncordoned, before the eviction) and its own newcomer becomes the spare; a pool short of
its spares gets one launched, gated and held."""

from __future__ import annotations

import json

from gpufleet.automation.heal.kube_service import default_kube, request_replace
from gpufleet.automation.heal.kube_spares import SPARE_TAINT
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.orchestrators.base import UNVERIFIED


def taint_keys(kube, node: str) -> list[str]:
    return [t["key"] for t in kube.nodes[node]["spec"].get("taints") or []]


def is_held_spare(kube, node: str) -> bool:
    spec = kube.nodes[node]["spec"]
    return spec.get("unschedulable") is True and SPARE_TAINT["key"] in taint_keys(kube, node) \
        and UNVERIFIED not in taint_keys(kube, node)


def make_spare(kube, node: str) -> None:
    """node-b as a spare the healer held earlier (what hold_as_spare leaves on a gated node)."""
    kube.nodes[node]["spec"]["unschedulable"] = True
    kube.nodes[node]["spec"]["taints"] = [dict(SPARE_TAINT)]


def node_of(kube, instance_id: str) -> str:
    return next(name for name, n in kube.nodes.items() if n["spec"].get("providerID", "").endswith(instance_id))


def as_training_pool_with_spares(sandbox, eks, n: int) -> None:
    """The inventory as collected from a training stack on EKS whose pool says ``spares: n``: the
    sandbox's one EKS stack stands in for it (its role is what decides where spares are held)."""
    doc = json.loads(sandbox.inventory.read_text())
    doc["stacks"][eks.ref.stack]["role"] = "training"
    for stack in doc["stacks"].values():
        for pool in stack.get("pools") or ():
            if pool["name"] == eks.ref.group.pool:
                pool["spares"] = n
    sandbox.inventory.write_text(json.dumps(doc))


def test_a_replacement_swaps_in_the_spare_and_holds_its_newcomer_as_the_next(eks, sandbox):
    desired = eks.group()["DesiredCapacity"]
    make_spare(eks.kube, "node-b")
    eks.kube.add_pod("train", "worker-0", "node-a", labels={"app": "train"})
    request_replace(default_kube("inference"), "node-a")
    report = eks.heal()
    d = next(x for x in report.plan.decisions if x.node == "node-a")
    assert d.swap_with == "node-b" and "swap in spare node-b" in d.reason
    assert next(x for x in report.plan.decisions if x.node == "node-b").swap_with == ""
    (op,) = report.operations
    assert op["state"] == "DONE" and op["instance_id"] == eks.a, report.to_dict()
    (fresh,) = op["replaced_by"]
    # The spare serves: its taint lifted and uncordoned, before node-a's pods were evicted.
    assert not eks.kube.nodes["node-b"]["spec"].get("unschedulable")
    assert SPARE_TAINT["key"] not in taint_keys(eks.kube, "node-b")
    requests = eks.kube.requests
    cordon = requests.index(("PATCH", "/api/v1/nodes/node-a"))
    admit = requests.index(("PATCH", "/api/v1/nodes/node-b"))
    evict = requests.index(("POST", "/api/v1/namespaces/train/pods/worker-0/eviction"))
    assert cordon < admit < evict
    # node-a's newcomer, gated, is the new spare: held, not admitted; the group kept its size.
    assert is_held_spare(eks.kube, node_of(eks.kube, fresh))
    assert eks.group()["DesiredCapacity"] == desired and eks.a not in eks.in_service()
    (journaled,) = heal_ops(eks.journal)
    assert journaled.body["swap_with"] == "node-b"
    intents = [e.step for e in eks.journal.events(journaled.op_id) if e.event_type == "intent"]
    assert intents.index("cordon") < intents.index("admit_spare") < intents.index("evict")
    assert eks.kube.rejected == [] and sandbox.client.iam()["denials"] == []
    # The next pass reads the new spare as one: left alone, nothing acted on.
    again = eks.heal()
    assert not again.operations
    spare = next(x for x in again.plan.decisions if x.node == node_of(eks.kube, fresh))
    assert spare.reason == "hot spare (held)"


def test_no_spare_in_the_group_is_a_plain_replacement(eks):
    request_replace(default_kube("inference"), "node-a")
    (op,) = eks.heal().operations
    assert op["state"] == "DONE"
    (fresh,) = op["replaced_by"]
    name = node_of(eks.kube, fresh)
    assert not is_held_spare(eks.kube, name) and UNVERIFIED not in taint_keys(eks.kube, name)
    (journaled,) = heal_ops(eks.journal)
    assert "admit_spare" not in [e.step for e in eks.journal.events(journaled.op_id) if e.event_type == "intent"]


def test_a_training_pool_short_of_its_spare_launches_gates_and_holds_one(eks, sandbox):
    as_training_pool_with_spares(sandbox, eks, 1)
    desired = eks.group()["DesiredCapacity"]
    before = set(eks.in_service())
    report = eks.heal()
    (op,) = report.operations
    assert op["action"] == "spare" and op["state"] == "DONE", report.to_dict()
    (fresh,) = op["replaced_by"]
    assert eks.group()["DesiredCapacity"] == desired + 1 and set(eks.in_service()) == before | {fresh}
    name = node_of(eks.kube, fresh)
    assert is_held_spare(eks.kube, name)
    assert eks.probe.seen, "the spare was gated before it was held"
    (journaled,) = heal_ops(eks.journal)
    assert journaled.body["orchestrator"] == "eks"
    states = [e.state for e in eks.journal.events(journaled.op_id) if e.event_type == "transition"]
    assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY",
                      "JOINED", "DONE"]
    assert eks.kube.rejected == [] and sandbox.client.iam()["denials"] == []
    # Held now: the next pass launches nothing more.
    again = eks.heal()
    assert not again.operations and eks.group()["DesiredCapacity"] == desired + 1
    assert next(x for x in again.plan.decisions if x.node == name).reason == "hot spare (held)"


def test_the_rebalancer_sees_an_eks_spare_as_no_consumers(eks):
    make_spare(eks.kube, "node-b")
    work = {w.instance_id: w for w in default_kube("inference").work([eks.a, eks.b])}
    assert work[eks.b].spare and not work[eks.a].spare

"""The EKS side of the healer's tests: the Kubernetes API fake (tests/fakes/kube.py) behind the
kubeconfig context gpufleet-inference, the sandbox's inference Auto Scaling group (IAM enforced), and
a "kubelet" thread that registers each new InService instance of the group as a node held by the
gate's taint, as the node bootstrap's ``--register-with-taints`` does."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.kube_service import default_kube, eks_groups, kube_heal_pass
from gpufleet.automation.heal.service import HealArgs
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import cached_clients
from tests.fakes.kube import FakeKube
from tests.lifecycle.health.fixture_runner import fake_tools

HOLD = {"key": "gpufleet.io/unverified", "value": "gate", "effect": "NoSchedule"}
UNHEALTHY = "gpufleet.io/unhealthy"


REGISTER_AFTER_S = 1.5


class SeenProbe:
    """The gate's probe, recording whether the node it probes had registered (the orchestrator probe
    reaches a node only through it), then running the checks on this host."""

    def __init__(self, inner: LocalProbe, kube: FakeKube) -> None:
        self.inner = inner
        self.kube = kube
        self.max_parallel = inner.max_parallel
        self.seen: list[tuple[str, bool]] = []

    def probe(self, node, tiers):
        with self.kube.lock:
            known = any(n["spec"].get("providerID", "").endswith(f"/{node}") for n in self.kube.nodes.values())
        self.seen.append((node, known))
        return self.inner.probe(node, tiers)


class EksFleet:
    def __init__(self, sandbox, kube: FakeKube, tmp_path):
        self.kube = kube
        self.inventory_path = sandbox.inventory
        self.inventory = load_inventory(sandbox.inventory)
        self.clients = cached_clients(AwsAccess(self.inventory, operation="heal-test"))
        (self.ref,) = eks_groups(self.inventory)
        self.asg = self.clients(self.ref.stack, "autoscaling")
        self.journal = Journal(self.clients(self.inventory.platform_stack, "dynamodb"), self.inventory.journal_table)
        healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
        self.probe = SeenProbe(LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": self.ref.group.instance_type,
                                               "PATH": f"{healthy}:{os.environ['PATH']}"}, timeout_s=120), kube)
        self.a, self.b = self.in_service()
        kube.add_node("node-a", self.a)
        kube.add_node("node-b", self.b)
        kube.add_node("system-1", "i-0000000000000system")  # the cluster's own node: not the healer's
        self.registered = {self.a, self.b}
        self._stop = threading.Event()
        self._kubelet = threading.Thread(target=self._register_newcomers, daemon=True)

    def __enter__(self):
        self._kubelet.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._kubelet.join(timeout=10)

    def _register_newcomers(self) -> None:
        deadline = time.monotonic() + 600
        first_seen: dict[str, float] = {}
        while not self._stop.wait(0.2) and time.monotonic() < deadline:
            for iid in set(self.in_service()) - self.registered:
                # The kubelet registers a while after the instance is InService (it boots first).
                if time.monotonic() - first_seen.setdefault(iid, time.monotonic()) >= REGISTER_AFTER_S:
                    self.kube.add_node(f"ip-{iid}", iid, taints=[dict(HOLD)])
                    self.registered.add(iid)

    def group(self) -> dict:
        return self.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.ref.group.asg_name])["AutoScalingGroups"][0]

    def in_service(self) -> list[str]:
        return sorted(i["InstanceId"] for i in self.group()["Instances"] if i["LifecycleState"] == "InService")

    def not_ready(self, node: str, minutes: float) -> None:
        since = datetime.fromtimestamp(time.time() - minutes * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.kube.nodes[node]["status"]["conditions"][0].update(status="False", lastTransitionTime=since)

    def heal(self, **kw):
        extra = {"sources": kw.pop("sources")} if "sources" in kw else {}
        args = HealArgs(inventory=self.inventory_path, probe="local",
                        budget=kw.pop("budget", HealBudget(per_group_per_hour=1, per_pool_per_hour=2)),
                        limits=kw.pop("limits", Limits(drain_timeout_s=20, replace_timeout_s=60, poll_s=0.2)), **kw)
        return kube_heal_pass(args, clients=self.clients, kube=default_kube, probes=lambda stack: self.probe,
                              journal=self.journal, **extra)

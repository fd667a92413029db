"""Kubernetes taint/label through the official client against a fake API server on 127.0.0.1,
and the Slurm drain reason."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client

from gpufleet.lifecycle.health.actions import (
    CHECK_LABEL,
    HEALTH_LABEL,
    TAINT_KEY,
    KubernetesActions,
    drain_reason,
)
from gpufleet.lifecycle.health.results import Action, CheckResult, NodeReport, Status, Tier


class FakeNodes:
    """GET / PATCH /api/v1/nodes/<name>: JSON merge semantics (null deletes a key, lists replace),
    resourceVersion checked and bumped as the API server does."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.patch_types: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, doc: dict) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                m = re.fullmatch(r"/api/v1/nodes/([^/?]+)", self.path)
                if m and m.group(1) in fake.nodes:
                    return self._send(200, fake.nodes[m.group(1)])
                return self._send(404, {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound"})

            def do_PATCH(self):
                m = re.fullmatch(r"/api/v1/nodes/([^/?]+)", self.path)
                patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.patch_types.append(self.headers["Content-Type"])
                node = fake.nodes[m.group(1)]
                version = patch.get("metadata", {}).get("resourceVersion")
                if version is not None and version != node["metadata"]["resourceVersion"]:
                    return self._send(409, {"kind": "Status", "apiVersion": "v1", "code": 409, "reason": "Conflict"})
                merge(node, patch)
                node["metadata"]["resourceVersion"] = str(int(node["metadata"]["resourceVersion"]) + 1)
                return self._send(200, node)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeNodes:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, name: str, taints: list[dict] | None = None) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "resourceVersion": "7", "labels": {"role": "inference"}},
                            "spec": {"taints": taints or []}, "status": {}}


def merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def report(node: str, *results: CheckResult) -> NodeReport:
    return NodeReport(node=node, tiers=(Tier.QUICK,), results=results)


ECC = CheckResult(check="ecc", status=Status.FAIL, detail="GPU 00000000:86:00.0: 2 volatile uncorrectable",
                  action=Action.RESET, device="00000000:86:00.0")
OK = CheckResult(check="ecc", status=Status.PASS, detail="no uncorrectable ECC errors on 8 GPUs")


def actions(fake: FakeNodes) -> KubernetesActions:
    conf = client.Configuration()
    conf.host = fake.url
    return KubernetesActions(client.CoreV1Api(client.ApiClient(conf)))


def test_failed_node_is_tainted_and_labelled_keeping_other_taints():
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    with FakeNodes() as fake:
        fake.add("ip-10-0-1-5", taints=[other])
        done = actions(fake).apply(report("ip-10-0-1-5", ECC))
        node = fake.nodes["ip-10-0-1-5"]
    assert done == f"tainted ip-10-0-1-5 {TAINT_KEY}=ecc:NoSchedule"
    assert node["spec"]["taints"] == [other, {"key": TAINT_KEY, "value": "ecc", "effect": "NoSchedule"}]
    assert node["metadata"]["labels"] == {"role": "inference", HEALTH_LABEL: "fail", CHECK_LABEL: "ecc"}


def test_healthy_again_removes_only_our_taint():
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    with FakeNodes() as fake:
        fake.add("ip-10-0-1-5", taints=[other])
        k = actions(fake)
        k.apply(report("ip-10-0-1-5", ECC))
        k.apply(report("ip-10-0-1-5", OK))
        node = fake.nodes["ip-10-0-1-5"]
    assert node["spec"]["taints"] == [other]
    assert node["metadata"]["labels"] == {"role": "inference", HEALTH_LABEL: "pass"}


def test_drain_reason_is_one_bounded_line():
    long = CheckResult(check="xid", status=Status.FAIL, detail="GPU 0000:b9:00: Xid 79\nfallen off " + "x" * 300)
    reason = drain_reason(long, more=2)
    assert reason.startswith("gpufleet: xid: GPU 0000:b9:00: Xid 79 fallen off") and "\n" not in reason
    assert len(reason) == 200 and reason.endswith("...")
    assert drain_reason(ECC) == "gpufleet: ecc: GPU 00000000:86:00.0: 2 volatile uncorrectable"

"""A fake Kubernetes API server on 127.0.0.1: only the endpoints the adapter uses.

Nodes, pods and PodDisruptionBudgets (label selector + minAvailable) live in memory. An eviction
that would take a budget's healthy pods below minAvailable answers 429, as the real API does.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeKube:
    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.pdbs: list[tuple[dict[str, str], int]] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, doc: dict) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                fake.handle(self, "GET")

            def do_PATCH(self):
                fake.handle(self, "PATCH")

            def do_POST(self):
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- state -----------------------------------------------------------------------------------
    def add_node(self, name: str, instance_id: str, ready: bool = True, taints: list[dict] | None = None) -> None:
        with self.lock:
            self._add_node(name, instance_id, ready)
            if taints:
                self.nodes[name]["spec"]["taints"] = taints

    def set_ready(self, name: str, ready: bool = True) -> None:
        with self.lock:
            self.nodes[name]["status"]["conditions"][0]["status"] = "True" if ready else "False"

    def _add_node(self, name: str, instance_id: str, ready: bool) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                            "spec": {"providerID": f"aws:///us-east-1a/{instance_id}"},
                            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}

    def add_pod(self, ns: str, name: str, node: str, labels: dict | None = None, annotations: dict | None = None,
                daemonset: bool = False) -> None:
        with self.lock:
            self._add_pod(ns, name, node, labels, annotations, daemonset)

    def _add_pod(self, ns: str, name: str, node: str, labels: dict | None, annotations: dict | None,
                 daemonset: bool) -> None:
        meta = {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}}
        if daemonset:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u1"}]
        self.pods[(ns, name)] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                 "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                                 "status": {"phase": "Running"}}

    def _blocked(self, pod: dict) -> bool:
        labels = pod["metadata"]["labels"]
        for selector, min_available in self.pdbs:
            if all(labels.get(k) == v for k, v in selector.items()):
                healthy = sum(1 for p in self.pods.values()
                              if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items()))
                if healthy - 1 < min_available:
                    return True
        return False

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        with self.lock:
            self.requests.append((method, url.path))
            if method == "GET" and url.path == "/api/v1/nodes":
                return h._send(200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": list(self.nodes.values())})
            if method == "GET" and url.path == "/api/v1/pods":
                selector = parse_qs(url.query).get("fieldSelector", [""])[0]
                node = selector.removeprefix("spec.nodeName=")
                items = [p for p in self.pods.values() if not selector or p["spec"]["nodeName"] == node]
                return h._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            m = re.fullmatch(r"/api/v1/nodes/([^/]+)", url.path)
            if method == "PATCH" and m and m.group(1) in self.nodes:
                patch = h._body()
                self.nodes[m.group(1)]["spec"].update(patch.get("spec", {}))
                return h._send(200, self.nodes[m.group(1)])
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction", url.path)
            if method == "POST" and m:
                h._body()
                pod = self.pods.get((m.group(1), m.group(2)))
                if pod is None:
                    return h._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
                if self._blocked(pod):
                    return h._send(429, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                                         "reason": "TooManyRequests",
                                         "message": "Cannot evict pod as it would violate the pod's disruption budget."})
                del self.pods[(m.group(1), m.group(2))]
                return h._send(201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201})
            return h._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})

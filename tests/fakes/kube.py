"""A Kubernetes API server on 127.0.0.1: the endpoints the control plane (the rebalancer's adapter,
``gpufleet launch`` and ``jobs``) and the node bundle (health taints and labels) call, answering as
the API server does, for the official client on the wire.

Every object it receives (created, or as a patch leaves it) is validated against the official
OpenAPI schemas in strict mode (kubernetes-validate), for each Kubernetes version in
``VERSIONS``; an object any of them rejects is refused with 422 Invalid, as the API server
refuses it, and kept in ``rejected``. Patches are JSON merge patches (null deletes a key, lists
replace: every list we patch, taints, is atomic); ``metadata.resourceVersion`` in a patch must
match, and each write bumps it. Evictions honour PodDisruptionBudgets (selector + minAvailable)
with 429, as the Eviction API does; an evicted pod is gone at once (its kubelet confirmed) unless
its node is not Ready: then it stays, marked with a ``deletionTimestamp``, as a pod on a lost
node does.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes_validate

from gpufleet.infra.eks_cluster import EksGpuClusterArgs

STANDARD_SUPPORT = ("1.34", "1.35", "1.36")
"""EKS versions in standard support on 2026-12-01 (EKS release calendar; 1.34's ends 2026-12-02)."""
VERSIONS = tuple(dict.fromkeys((EksGpuClusterArgs.__dataclass_fields__["kubernetes_version"].default,
                                *STANDARD_SUPPORT)))
"""The version the program deploys by default, and those in standard support."""

KINDS = {"services": ("v1", "Service"), "jobs": ("batch/v1", "Job"), "eviction": ("policy/v1", "Eviction")}
"""Collection (or subresource) of a POST -> the apiVersion and kind the server decodes it as."""


def _status(code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}


def without_nulls(value: Any) -> Any:
    """As the API server decodes JSON: a null field is an unset field."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def merge(target: dict, patch: dict) -> None:
    """JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def invalid(obj: dict[str, Any]) -> str | None:
    """Why the schemas of ``VERSIONS`` reject the object, or None."""
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, f"{version}.0", strict=True)
        except kubernetes_validate.ValidationError as err:
            return f"Kubernetes {version}: {err.message} at {'.'.join(str(p) for p in err.path) or '(root)'}"
    return None


def selects(selector: str, labels: dict[str, str]) -> bool:
    """An equality-based label selector (``a=b,c``; a bare key asks that it exists)."""
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("=")
        if (sep and labels.get(key) != value) or (not sep and key not in labels):
            return False
    return True


class FakeKube:
    """``with FakeKube() as kube:``; ``kube.url`` for a client Configuration or a kubeconfig."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.pod_logs: dict[tuple[str, str], str] = {}
        self.pdbs: list[tuple[dict[str, str], int]] = []
        self.objects: dict[tuple[str, str, str], dict] = {}
        """Services and Jobs by (collection, namespace, name)."""
        self.refuse: set[str] = set()
        """Collections whose creates the server forbids (403), e.g. {"jobs"}."""
        self.requests: list[tuple[str, str]] = []
        self.patch_types: list[str] = []
        self.rejected: list[tuple[dict, str]] = []
        """Objects refused as invalid, with the reason."""
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, doc: dict | str) -> None:
                raw = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(doc, str) else "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, context: str) -> dict[str, Any]:
        """A kubeconfig whose ``context`` reaches this server, and whose current context reaches
        nothing (so a client that falls back to it fails)."""
        return {"apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}},
                             {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "fake", "user": "u"}},
                             {"name": "elsewhere", "context": {"cluster": "nowhere", "user": "u"}}]}

    # -- state -----------------------------------------------------------------------------------
    def add_node(self, name: str, instance_id: str | None = None, *, ready: bool = True,
                 taints: list[dict] | None = None, labels: dict[str, str] | None = None) -> None:
        spec: dict[str, Any] = {"taints": list(taints or [])}
        if instance_id:
            spec["providerID"] = f"aws:///us-east-1a/{instance_id}"
        with self.lock:
            self.nodes[name] = {"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": name, "resourceVersion": "7", "labels": dict(labels or {})},
                                "spec": spec,
                                "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}

    def set_ready(self, name: str, ready: bool = True) -> None:
        with self.lock:
            self.nodes[name]["status"]["conditions"][0]["status"] = "True" if ready else "False"

    def add_pod(self, ns: str, name: str, node: str, labels: dict | None = None, annotations: dict | None = None,
                daemonset: bool = False, log: str = "", phase: str = "Running") -> None:
        meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}}
        if daemonset:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u1"}]
        with self.lock:
            self.pods[(ns, name)] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                     "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                                     "status": {"phase": phase}}
            self.pod_logs[(ns, name)] = log

    def _ready(self, node: str) -> bool:
        conditions = (self.nodes.get(node) or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _blocked(self, pod: dict) -> bool:
        labels = pod["metadata"]["labels"]
        for selector, min_available in self.pdbs:
            if all(labels.get(k) == v for k, v in selector.items()):
                healthy = sum(1 for p in self.pods.values()
                              if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items()))
                if healthy - 1 < min_available:
                    return True
        return False

    # -- the API ---------------------------------------------------------------------------------
    def handle(self, h: Any, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append((method, url.path))
            code, doc = self._route(h, method, url.path, query)
        h.reply(code, doc)

    def _route(self, h: Any, method: str, path: str, query: dict[str, str]) -> tuple[int, dict | str]:
        for pattern, methods in ROUTES:
            m = re.fullmatch(pattern, path)
            if m and method in methods:
                return methods[method](self, h, *m.groups(), query=query)
        return 404, _status(404, "NotFound", f"{method} {path}")

    def _list(self, kind: str, items: Iterator[dict]) -> tuple[int, dict]:
        return 200, {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": list(items)}

    def _check(self, obj: dict, api_version: str, kind: str) -> tuple[int, dict] | None:
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        problem = invalid(without_nulls(obj))
        if problem is not None:
            self.rejected.append((obj, problem))
            return 422, _status(422, "Invalid", f"{kind} is invalid: {problem}")
        return None

    def list_nodes(self, h: Any, query: dict[str, str]) -> tuple[int, dict]:
        return self._list("NodeList", iter(self.nodes.values()))

    def read_node(self, h: Any, name: str, query: dict[str, str]) -> tuple[int, dict]:
        node = self.nodes.get(name)
        return (200, node) if node is not None else (404, _status(404, "NotFound", f'nodes "{name}" not found'))

    def patch_node(self, h: Any, name: str, query: dict[str, str]) -> tuple[int, dict]:
        self.patch_types.append(h.headers.get("Content-Type", ""))
        patch = h.body()
        node = self.nodes.get(name)
        if node is None:
            return 404, _status(404, "NotFound", f'nodes "{name}" not found')
        version = (patch.get("metadata") or {}).get("resourceVersion")
        if version is not None and version != node["metadata"]["resourceVersion"]:
            return 409, _status(409, "Conflict", "the object has been modified; please apply your changes to the latest version")
        patched = copy.deepcopy(node)
        merge(patched, patch)
        refused = self._check(patched, "v1", "Node")
        if refused:
            return refused
        patched["metadata"]["resourceVersion"] = str(int(node["metadata"]["resourceVersion"]) + 1)
        self.nodes[name] = patched
        return 200, patched

    def list_all_pods(self, h: Any, query: dict[str, str]) -> tuple[int, dict]:
        node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
        return self._list("PodList", (p for p in self.pods.values() if not node or p["spec"]["nodeName"] == node))

    def list_pods(self, h: Any, ns: str, query: dict[str, str]) -> tuple[int, dict]:
        selector = query.get("labelSelector", "")
        return self._list("PodList", (p for (pns, _), p in self.pods.items()
                                      if pns == ns and selects(selector, p["metadata"]["labels"])))

    def pod_log(self, h: Any, ns: str, name: str, query: dict[str, str]) -> tuple[int, dict | str]:
        if (ns, name) not in self.pods:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        lines = self.pod_logs[(ns, name)].splitlines(keepends=True)
        tail = int(query.get("tailLines", len(lines)))
        return 200, "".join(lines[-tail:] if tail else [])

    def evict(self, h: Any, ns: str, name: str, query: dict[str, str]) -> tuple[int, dict]:
        refused = self._check(h.body(), *KINDS["eviction"])
        if refused:
            return refused
        pod = self.pods.get((ns, name))
        if pod is None:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        if self._blocked(pod):
            return 429, _status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
        if not self._ready(pod["spec"]["nodeName"]):
            # The API server marks it deleted; only its kubelet (gone with its node) would remove it.
            pod["metadata"].setdefault("deletionTimestamp", "2026-12-01T00:00:00Z")
            pod["metadata"].setdefault("deletionGracePeriodSeconds", 30)
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        del self.pods[(ns, name)]
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def create(self, h: Any, ns: str, collection: str, query: dict[str, str]) -> tuple[int, dict]:
        obj = h.body()
        refused = self._check(obj, *KINDS[collection])
        if refused:
            return refused
        if collection in self.refuse:
            return 403, _status(403, "Forbidden", f"{collection} is forbidden")
        name = obj["metadata"]["name"]
        if (collection, ns, name) in self.objects:
            return 409, _status(409, "AlreadyExists", f'{collection} "{name}" already exists')
        stored = {**obj, "metadata": {**obj["metadata"], "namespace": ns, "uid": f"uid-{name}"}, "status": {}}
        self.objects[(collection, ns, name)] = stored
        return 201, stored

    def list_jobs(self, h: Any, ns: str, query: dict[str, str]) -> tuple[int, dict]:
        selector = query.get("labelSelector", "")
        return self._list("JobList", (o for (c, ons, _), o in self.objects.items() if c == "jobs" and ons == ns
                                      and selects(selector, o["metadata"].get("labels") or {})))

    def delete(self, h: Any, ns: str, collection: str, name: str, query: dict[str, str]) -> tuple[int, dict]:
        gone = self.objects.pop((collection, ns, name), None)
        if gone is None:
            return 404, _status(404, "NotFound", f'{collection} "{name}" not found')
        return 200, gone


ROUTES = (
    (r"/api/v1/nodes", {"GET": FakeKube.list_nodes}),
    (r"/api/v1/nodes/([^/]+)", {"GET": FakeKube.read_node, "PATCH": FakeKube.patch_node}),
    (r"/api/v1/pods", {"GET": FakeKube.list_all_pods}),
    (r"/api/v1/namespaces/([^/]+)/pods", {"GET": FakeKube.list_pods}),
    (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", {"GET": FakeKube.pod_log}),
    (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction", {"POST": FakeKube.evict}),
    (r"/(?:api/v1|apis/batch/v1)/namespaces/([^/]+)/(services|jobs)", {"POST": FakeKube.create}),
    (r"/apis/batch/v1/namespaces/([^/]+)/jobs", {"GET": FakeKube.list_jobs}),
    (r"/(?:api/v1|apis/batch/v1)/namespaces/([^/]+)/(services|jobs)/([^/]+)", {"DELETE": FakeKube.delete}),
)
"""Path pattern -> handler by method (the first pattern that matches path and method wins)."""

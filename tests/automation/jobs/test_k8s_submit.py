"""EKS submission through the official kubernetes client against a fake API server on 127.0.0.1.

The fake stands at the HTTP boundary: it stores what the client POSTs and answers as the API server
does (201 with the object, 409 when the name exists).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from gpufleet.automation.jobs.k8s import KubernetesError
from gpufleet.automation.jobs.launch import launch
from tests.conftest import REPO


class FakeApiServer(BaseHTTPRequestHandler):
    objects: dict[str, dict] = {}
    refuse_jobs = False

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = f"{self.path}/{body['metadata']['name']}"
        if self.refuse_jobs and body["kind"] == "Job":
            self._reply(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403})
            return
        if key in self.objects:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409}
            self._reply(409, status)
            return
        self.objects[key] = body
        self._reply(201, body)

    def do_DELETE(self) -> None:
        gone = self.objects.pop(self.path, None)
        if gone is None:
            self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
        else:
            self._reply(200, gone)  # a Service delete answers with the deleted object

    def _reply(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api():
    FakeApiServer.objects = {}
    FakeApiServer.refuse_jobs = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    yield client.ApiClient(cfg)
    server.shutdown()
    server.server_close()


def test_launch_creates_service_then_indexed_job(api):
    result = launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert result.submitted and result.job_id == "training/gpt-reference"
    paths = list(FakeApiServer.objects)
    assert paths == ["/api/v1/namespaces/training/services/gpt-reference",
                     "/apis/batch/v1/namespaces/training/jobs/gpt-reference"]
    job = FakeApiServer.objects[paths[1]]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == "gpt-reference"


def test_second_launch_of_same_name_fails_with_a_hint(api):
    launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    with pytest.raises(KubernetesError) as info:
        launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert "409" in info.value.message and "cancel" in (info.value.hint or "")


def test_refused_job_leaves_no_service_behind(api):
    FakeApiServer.refuse_jobs = True
    with pytest.raises(KubernetesError, match="403"):
        launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert FakeApiServer.objects == {}

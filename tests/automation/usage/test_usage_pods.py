"""`usage --by job` on EKS against a real Prometheus: kube-state-metrics series of pods of known
length, backfilled with promtool, queried over the HTTP API with a SigV4-signed request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.credentials import Credentials

from gpufleet.automation.usage import pods
from gpufleet.automation.usage.prometheus_query import PrometheusQuery, query_base
from gpufleet.automation.usage.sources import kubernetes_jobs
from gpufleet.infra import metrics_agent
from gpufleet.infra.errors import AwsCallError
from tests.prometheus_harness import backfilled_prometheus

pytestmark = pytest.mark.promtool
T0 = 1_764_547_200  # 2025-12-01T00:00Z, on the 30 s grid
STEP = pods.DEFAULT_STEP_S


def pod_series(lines: dict[str, list[str]], stack: str, namespace: str, pod: str, owner: tuple[str, str],
               gpus: int, phases: list[tuple[str, int, int]], resource: str = "nvidia_com_gpu",
               t0: int = T0) -> None:
    """kube-state-metrics' series of one pod: ``phases`` as (phase, from, to) seconds after ``t0``,
    scraped every 30 s from the first phase's start to the last phase's end (exclusive)."""
    base = f'stack="{stack}",namespace="{namespace}",pod="{pod}"'
    first, last = phases[0][1], phases[-1][2]
    for t in range(t0 + first, t0 + last, STEP):
        lines["kube_pod_container_resource_requests"].append(
            f'kube_pod_container_resource_requests{{{base},container="main",resource="{resource}",unit="integer"}} '
            f"{gpus} {t}")
        lines["kube_pod_owner"].append(
            f'kube_pod_owner{{{base},owner_kind="{owner[0]}",owner_name="{owner[1]}",owner_is_controller="true"}} 1 {t}')
        for phase in ("Pending", "Running", "Succeeded"):
            on = any(p == phase and t0 + lo <= t < t0 + hi for p, lo, hi in phases)
            lines["kube_pod_status_phase"].append(f'kube_pod_status_phase{{{base},phase="{phase}"}} {int(on)} {t}')


def family_lines() -> dict[str, list[str]]:
    return {"kube_pod_container_resource_requests": [], "kube_pod_owner": [], "kube_pod_status_phase": []}


def render(lines: dict[str, list[str]]) -> str:
    """OpenMetrics text: each family together, each series' samples in time order."""
    out = []
    for family, samples in lines.items():
        out.append(f"# TYPE {family} gauge")
        out += sorted(samples, key=lambda s: (s.rsplit(" ", 2)[0], int(s.rsplit(" ", 1)[1])))
    return "\n".join([*out, "# EOF", ""])


def openmetrics() -> str:
    lines = family_lines()
    # Job train-a: 2 GPUs running 30 min, then Succeeded and kept 10 min: 1.0 GPU-hour.
    pod_series(lines, "inference", "research", "train-a-0", ("Job", "train-a"), 2,
               [("Running", 0, 1800), ("Succeeded", 1800, 2400)])
    # Job train-b: two pods of 4 GPUs, pending 10 min (not counted), running 60 min: 8.0 GPU-hours.
    for i in range(2):
        pod_series(lines, "inference", "research", f"train-b-{i}", ("Job", "train-b"), 4,
                   [("Pending", 600, 1200), ("Running", 1200, 4800)])
    # A bare pod of 1 GPU deleted while running after 30 scrapes: 900 s, not 900 s + a 5 min lookback.
    pod_series(lines, "inference", "debug", "gpu-shell", ("<none>", "<none>"), 1, [("Running", 3600, 4500)])
    # Not counted: a CPU request, and another stack's pod.
    pod_series(lines, "inference", "research", "cpu-only", ("Job", "etl"), 16, [("Running", 0, 7200)], resource="cpu")
    pod_series(lines, "elsewhere", "serve", "serve-0", ("ReplicaSet", "serve-7f9"), 8, [("Running", 0, 7200)])
    return render(lines)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    with backfilled_prometheus(tmp_path_factory.mktemp("prometheus"), openmetrics()) as url:
        yield url


def signed(url: str) -> PrometheusQuery:
    return PrometheusQuery(url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret", "token"))


def test_gpu_hours_per_job_are_exact_for_pods_of_known_length(prometheus):
    found = kubernetes_jobs(signed(prometheus), ["inference"], T0, T0 + 7200)
    got = {(j.namespace, j.owner_kind, j.owner): (j.pods, j.gpu_seconds, j.first - T0, j.last - T0) for j in found}
    assert got == {
        ("research", "Job", "train-a"): (1, 2 * 1800, 0, 1800),
        ("research", "Job", "train-b"): (2, 2 * 4 * 3600, 1200, 4800),
        ("debug", "Pod", "gpu-shell"): (1, 900, 3600, 4500),
    }
    assert sum(j.gpu_hours for j in found) == 1.0 + 8.0 + 0.25


def test_a_period_cuts_the_pods_at_its_edges(prometheus):
    found = kubernetes_jobs(signed(prometheus), ["inference"], T0 + 1500, T0 + 1500 + 1800)
    got = {j.owner: j.gpu_seconds for j in found}
    assert got == {"train-a": 2 * 300, "train-b": 2 * 4 * 1800}


def test_several_windows_add_up_to_one(prometheus, monkeypatch):
    monkeypatch.setattr(pods, "MAX_POINTS", 7)  # 240 steps in 35 windows, the last one short
    found = kubernetes_jobs(signed(prometheus), ["inference"], T0, T0 + 7200)
    assert len(pods.windows(T0, T0 + 7200, STEP)) == 35
    assert {j.owner: j.gpu_seconds for j in found} == {"train-a": 3600, "train-b": 28800, "gpu-shell": 900}


def test_windows_cover_every_step_once():
    spans = pods.windows(0, 30 * 25_001, 30)
    assert spans[0] == (0, 30 * 9_999) and spans[-1] == (30 * 20_000, 30 * 25_000)
    assert [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)] == [30, 30]


def test_the_step_is_the_collectors_scrape_interval():
    assert f"{pods.DEFAULT_STEP_S}s" == metrics_agent.SCRAPE_INTERVAL


def test_a_bad_query_is_an_error_naming_the_endpoint(prometheus):
    with pytest.raises(AwsCallError) as caught:
        signed(prometheus).query_range("sum(", T0, T0 + 60, STEP)
    assert prometheus in str(caught.value) and "HTTP 400" in str(caught.value)


def test_the_query_root_comes_from_the_remote_write_url():
    url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1234/api/v1/remote_write"
    assert query_base(url) == "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1234"


def test_the_request_is_signed_for_amp(tmp_path):
    """A stand-in for AMP's query endpoint that refuses what AMP refuses: an unsigned request, or one
    signed for another service or region."""
    import http.server
    import threading

    seen = {}

    class Amp(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            auth = self.headers.get("Authorization", "")
            seen.update(auth=auth, token=self.headers.get("X-Amz-Security-Token"), path=self.path)
            ok = (auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                  and "/us-east-1/aps/aws4_request" in auth and "SignedHeaders=host;x-amz-date" in auth
                  and self.headers.get("X-Amz-Date"))
            body = (b'{"status":"success","data":{"resultType":"matrix","result":[]}}' if ok
                    else b'{"message":"Missing Authentication Token"}')
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Amp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/workspaces/ws-1234"
        assert signed(base).query_range("up", T0, T0 + 60, STEP) == []
        assert seen["token"] == "token" and seen["path"].startswith("/workspaces/ws-1234/api/v1/query_range?")
        with pytest.raises(AwsCallError) as caught:
            PrometheusQuery(base, region="us-east-1", credentials=None).query_range("up", T0, T0 + 60, STEP)
        assert "HTTP 403" in str(caught.value) and "aps:QueryMetrics" in (caught.value.hint or "")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

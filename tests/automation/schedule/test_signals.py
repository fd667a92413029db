"""Serving signals over the Prometheus query API: a small endpoint on 127.0.0.1 that answers
``/api/v1/query_range`` the way Prometheus does (and rejects what Prometheus would), and checks the
SigV4 signature the way AMP does (recomputed from the request with the same credentials)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gpufleet.automation.schedule.signals import (
    PrometheusSource,
    amp_query_base,
    kv_cache_query,
    queue_depth_query,
    read_signals,
)
from gpufleet.infra.errors import AwsCallError, BadInputError
from gpufleet.infra.model import PoolSchedule, ReactiveRule, ScheduleWindow, ServingSignal

NOW = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CREDS = Credentials("AKIDEXAMPLE", "secret-example")


class Prom(BaseHTTPRequestHandler):
    series: dict[str, list[float]] = {}
    sign_region: str | None = None
    seen: list[dict[str, str]] = []

    def log_message(self, *args):
        pass

    def _answer(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        url = f"http://{self.headers['Host']}{self.path}"
        if self.path != "/api/v1/query_range":
            return self._answer(404, {"status": "error", "error": "not found"})
        if self.sign_region is not None and not self._signed(url, raw):
            return self._answer(403, {"message": "The request signature we calculated does not match"})
        form = dict(urllib.parse.parse_qsl(raw.decode(), strict_parsing=True))
        self.seen.append(form)
        try:
            start, end, step = float(form["start"]), float(form["end"]), float(form["step"])
        except (KeyError, ValueError):
            return self._answer(400, {"status": "error", "errorType": "bad_data", "error": "bad start/end/step"})
        if end < start or step <= 0:
            return self._answer(400, {"status": "error", "errorType": "bad_data", "error": "end before start"})
        values = self.series.get(form.get("query", ""))
        result = [] if values is None else [{"metric": {}, "values": [[start + 60 * i, str(v)] for i, v in enumerate(values)]}]
        return self._answer(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _signed(self, url, raw):
        got = self.headers.get("Authorization", "")
        if "Credential=AKIDEXAMPLE/" not in got or "/aps/aws4_request" not in got:
            return False
        again = AWSRequest(method="POST", url=url, data=raw.decode(),
                           headers={"Content-Type": self.headers["Content-Type"], "X-Amz-Date": self.headers["X-Amz-Date"]})
        signer = SigV4Auth(CREDS, "aps", self.sign_region)
        again.context["timestamp"] = self.headers["X-Amz-Date"]
        expected = signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)
        return got.endswith(f"Signature={expected}")


@pytest.fixture
def prom():
    Prom.series, Prom.seen, Prom.sign_region = {}, [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Prom)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def schedule(pool="h100-use1-az4", reactive=True):
    rule = ReactiveRule(signal=ServingSignal.KV_CACHE, up_above=0.9, down_below=0.5, up_minutes=2, down_minutes=10,
                        step=1, max_nodes=6) if reactive else None
    window = ScheduleWindow(days=frozenset({0, 1, 2, 3, 4}), start=dt.time(9), end=dt.time(15), timezone="America/Chicago",
                            inference_nodes=5)
    return PoolSchedule(pool=pool, windows=(window,), inference_nodes_outside=1, training_floor=2,
                        lead_time_minutes=15, drain_minutes=5, reactive=rule)


def test_signals_per_pool_from_the_query_api(prom):
    Prom.series = {kv_cache_query("h100-use1-az4"): [0.95, 0.97, 0.99],
                   queue_depth_query("h100-use1-az4"): [3.0, 4.0, 5.0]}
    got, notes = read_signals(PrometheusSource(base_url=prom), [schedule(), schedule("other", reactive=False)], NOW, 30)
    assert notes == []
    assert list(got) == ["h100-use1-az4"]  # no reactive rule, no query
    assert got["h100-use1-az4"].kv_cache == (0.95, 0.97, 0.99) and got["h100-use1-az4"].queue_depth == (3.0, 4.0, 5.0)
    assert {q["step"] for q in Prom.seen} == {"60"}
    assert float(Prom.seen[0]["end"]) - float(Prom.seen[0]["start"]) == 30 * 60


def test_a_signed_query_is_accepted_and_an_unsigned_one_refused(prom):
    Prom.sign_region = "us-east-1"
    Prom.series = {kv_cache_query("p"): [0.5]}
    signed = PrometheusSource(base_url=prom, region="us-east-1", credentials=CREDS)
    assert signed.range_query(kv_cache_query("p"), NOW - dt.timedelta(minutes=5), NOW) == [0.5]
    for wrong in (PrometheusSource(base_url=prom),
                  PrometheusSource(base_url=prom, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "other"))):
        with pytest.raises(AwsCallError, match="answered 403"):
            wrong.range_query(kv_cache_query("p"), NOW - dt.timedelta(minutes=5), NOW)


def test_an_unreadable_source_leaves_the_pool_to_its_windows(prom):
    got, notes = read_signals(PrometheusSource(base_url=prom + "/nowhere"), [schedule()], NOW)
    assert got == {} and notes and "the windows alone decide" in notes[0] and "404" in notes[0]


def test_the_amp_query_base_comes_from_the_remote_write_url():
    url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1234/api/v1/remote_write"
    assert amp_query_base(url) == "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1234"
    assert amp_query_base(url, "http://127.0.0.1:4566/") == "http://127.0.0.1:4566/workspaces/ws-1234"
    with pytest.raises(BadInputError, match="remote_write"):
        amp_query_base("https://example.com/push")

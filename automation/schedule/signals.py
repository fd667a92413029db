"""Serving signals for the reconciler: the Prometheus HTTP query API (``/api/v1/query_range``),
Amazon Managed Prometheus signed with SigV4 (botocore's SigV4Auth, service ``aps``) or a plain
Prometheus-compatible endpoint (the sandbox, a team's own Prometheus).

Per scheduled pool, one range query a signal over the last ``minutes`` at a one-minute step; the
serving deployment's vLLM pods carry the ``pool`` label the collectors add (as every dashboard uses):

    avg(vllm:kv_cache_usage_perc{pool="P"})
    sum(vllm:num_requests_waiting{pool="P"}) / count(vllm:num_requests_waiting{pool="P"})
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.schedule.model import PoolSignals
from gpufleet.infra.errors import AwsCallError, BadInputError, GpufleetError
from gpufleet.infra.model import PoolSchedule

TIMEOUT_S = 10.0


def kv_cache_query(pool: str) -> str:
    return f'avg(vllm:kv_cache_usage_perc{{pool="{pool}"}})'


def queue_depth_query(pool: str) -> str:
    sel = f'vllm:num_requests_waiting{{pool="{pool}"}}'
    return f"sum({sel}) / count({sel})"


def amp_query_base(remote_write_url: str, endpoint: str | None = None) -> str:
    """The workspace's query base from its remote-write URL (``.../workspaces/ws-x/api/v1/remote_write``).
    ``endpoint``: the AMP endpoint boto3 would use instead (``AWS_ENDPOINT_URL_AMP`` or ``AWS_ENDPOINT_URL``)."""
    marker = "/api/v1/remote_write"
    if not remote_write_url.endswith(marker):
        raise BadInputError(f"monitoring remote_write_url {remote_write_url!r}: expected .../api/v1/remote_write")
    base = remote_write_url[: -len(marker)]
    if endpoint:
        return endpoint.rstrip("/") + "/workspaces/" + base.rsplit("/workspaces/", 1)[-1]
    return base


@dataclass(frozen=True, kw_only=True)
class PrometheusSource:
    """Where the signals are read."""

    base_url: str
    """Query base: ``https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>`` or ``http://127.0.0.1:9090``."""
    region: str | None = None
    """Sign with SigV4 for this region (AMP); None: unsigned (a plain Prometheus)."""
    credentials: Any = None
    """botocore credentials for SigV4 (a session's ``get_credentials()``)."""

    def range_query(self, query: str, start: dt.datetime, end: dt.datetime) -> list[float]:
        """One sample a minute of a single-series query, oldest first (gaps skipped)."""
        params = {"query": query, "start": f"{start.timestamp():.0f}", "end": f"{end.timestamp():.0f}", "step": "60"}
        result = self._post("query_range", params, "matrix")
        if len(result) > 1:
            raise AwsCallError(f"prometheus query {query!r} returned {len(result)} series, expected one")
        return [float(v) for _, v in result[0]["values"]] if result else []

    def instant_query(self, query: str) -> list[tuple[dict[str, str], float]]:
        """Each series of an instant vector now: its labels and its value."""
        return [(dict(r["metric"]), float(r["value"][1])) for r in self._post("query", {"query": query}, "vector")]

    def _post(self, api: str, params: dict[str, str], result_type: str) -> list[dict[str, Any]]:
        url = f"{self.base_url.rstrip('/')}/api/v1/{api}"
        body = urllib.parse.urlencode(params)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.region is not None:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest

            signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
            SigV4Auth(self.credentials, "aps", self.region).add_auth(signed)
            headers = dict(signed.headers.items())
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310 - the configured endpoint
                doc = json.loads(answer.read())
        except urllib.error.HTTPError as err:
            raise AwsCallError(f"prometheus query at {url} answered {err.code} {err.reason}",
                               "check the signals endpoint and its credentials") from None
        except (urllib.error.URLError, TimeoutError, ValueError) as err:
            raise AwsCallError(f"prometheus query at {url} failed: {err}", "check the signals endpoint") from None
        if doc.get("status") != "success" or doc.get("data", {}).get("resultType") != result_type:
            raise AwsCallError(f"prometheus query at {url}: unexpected answer {str(doc)[:200]}")
        return list(doc["data"]["result"])


def read_signals(source: PrometheusSource | None, schedules: Sequence[PoolSchedule], now: dt.datetime,
                 minutes: int = 30) -> tuple[dict[str, PoolSignals], list[str]]:
    """Recent signals of every pool with a reactive rule; a failed read leaves that pool to its windows."""
    out: dict[str, PoolSignals] = {}
    notes: list[str] = []
    if source is None:
        return out, notes
    start = now - dt.timedelta(minutes=minutes)
    for schedule in schedules:
        if schedule.reactive is None:
            continue
        try:
            out[schedule.pool] = PoolSignals(kv_cache=tuple(source.range_query(kv_cache_query(schedule.pool), start, now)),
                                             queue_depth=tuple(source.range_query(queue_depth_query(schedule.pool), start, now)))
        except GpufleetError as err:
            notes.append(f"pool {schedule.pool}: no signals ({err.message}); the windows alone decide")
    return out, notes

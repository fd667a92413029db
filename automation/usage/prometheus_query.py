"""Prometheus's HTTP query API, signed with SigV4 for Amazon Managed Service for Prometheus.

AMP serves the Prometheus API under ``/workspaces/<id>/api/v1/`` and wants every request signed for
the service ``aps``; a plain Prometheus (the tests' local one) ignores the signature. Every call has
a timeout; the caller bounds how many it makes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gpufleet.infra.errors import AwsCallError

REMOTE_WRITE_SUFFIX = "/api/v1/remote_write"


def query_base(remote_write_url: str) -> str:
    """The workspace's query root from its remote-write URL (the contract carries the latter)."""
    if not remote_write_url.endswith(REMOTE_WRITE_SUFFIX):
        raise ValueError(f"remote_write_url {remote_write_url!r} does not end in {REMOTE_WRITE_SUFFIX}")
    return remote_write_url[: -len(REMOTE_WRITE_SUFFIX)]


class PrometheusQuery:
    """``query_range`` against ``base`` (``https://aps-workspaces.<region>.amazonaws.com/workspaces/ws-...``)."""

    def __init__(self, base: str, *, region: str, credentials: Credentials | None, timeout_s: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.timeout_s = timeout_s

    def query_range(self, promql: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
        """The ``matrix`` result of one query_range call (evaluations ``start``..``end`` inclusive)."""
        request = AWSRequest(method="GET", url=f"{self.base}/api/v1/query_range",
                             params={"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": f"{step_s}s"})
        if self.credentials is not None:
            SigV4Auth(self.credentials.get_frozen_credentials(), "aps", self.region).add_auth(request)
        prepared = request.prepare()
        http = urllib.request.Request(prepared.url, headers=dict(prepared.headers.items()), method="GET")
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")[:500]
            raise AwsCallError(f"Prometheus query_range at {self.base}: HTTP {error.code}: {body}",
                               "the caller needs aps:QueryMetrics on the workspace" if error.code == 403 else None,
                               service="aps", operation="QueryMetrics", http_status=error.code) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise AwsCallError(f"Prometheus query_range at {self.base}: {error}", service="aps",
                               operation="QueryMetrics") from None
        if doc.get("status") != "success" or (doc.get("data") or {}).get("resultType") != "matrix":
            raise AwsCallError(f"Prometheus query_range at {self.base}: {doc.get('errorType')}: {doc.get('error')}",
                               service="aps", operation="QueryMetrics")
        return list(doc["data"]["result"])

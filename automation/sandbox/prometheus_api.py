"""Amazon Managed Prometheus's query API for the sandbox's workspaces (moto serves only the control plane).

AMP answers the Prometheus HTTP API under ``/workspaces/<id>/api/v1/`` to requests signed for
``aps``. In the sandbox nothing remote-writes to a workspace (no collector runs), so a workspace
holds no series and every query answers the way AMP answers one over an empty workspace: success
with an empty result. What the caller sends is checked as AMP checks it: the workspace must exist
in the caller's account and region (404 ``ResourceNotFoundException``), the query must be given
(400 ``bad_data``), and with IAM enforced the caller needs ``aps:QueryMetrics`` on the workspace
(403 ``AccessDeniedException``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

QUERY_PATH = re.compile(r"^/workspaces/(ws-[0-9a-zA-Z-]+)/api/v1/(query|query_range|series|labels)$")
RESULT_TYPE = {"query": "vector", "query_range": "matrix"}
"""The ``resultType`` of each query API; ``series`` and ``labels`` answer a plain (empty) list."""
ACTION = "QueryMetrics"
"""The IAM action (``aps:QueryMetrics``) for every read of the query API."""


@dataclass(frozen=True, kw_only=True)
class QueryCall:
    """One request to a workspace's query API."""

    workspace_id: str
    """The ``ws-...`` id in the path."""
    api: str
    """``query``, ``query_range``, ``series`` or ``labels``."""
    params: dict[str, list[str]]
    """The query string and the form body together, as Prometheus reads them."""


def parse(method: str, path: str, query_string: str, body: bytes, content_type: str) -> QueryCall | None:
    """The query call a request is, or None when it is not one (anything else goes to moto)."""
    match = QUERY_PATH.match(path)
    if not match or method not in ("GET", "POST"):
        return None
    params = parse_qs(query_string, keep_blank_values=True)
    if method == "POST" and "x-www-form-urlencoded" in content_type:
        for key, values in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
    return QueryCall(workspace_id=match.group(1), api=match.group(2), params=params)


def workspace_arn(account: str, region: str, workspace_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:aps:{region}:{account}:workspace/{workspace_id}"


def workspace_exists(account: str, region: str, workspace_id: str) -> bool:
    from moto.amp.models import amp_backends

    return workspace_id in amp_backends[account][region].workspaces


def answer(call: QueryCall, account: str, region: str,
           authorize: Callable[[str], str | None]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of AMP's answer. ``authorize``: the workspace ARN -> None when the
    caller may query it, else the denial's message."""
    if not workspace_exists(account, region, call.workspace_id):
        return _json(404, {"message": f"Workspace not found: {call.workspace_id}"},
                     {"x-amzn-ErrorType": "ResourceNotFoundException"})
    denied = authorize(workspace_arn(account, region, call.workspace_id))
    if denied is not None:
        return _json(403, {"message": denied}, {"x-amzn-ErrorType": "AccessDeniedException"})
    if call.api in RESULT_TYPE:
        if not (call.params.get("query") or [""])[0].strip():
            return _json(400, {"status": "error", "errorType": "bad_data",
                               "error": "invalid parameter \"query\": unknown position: parse error: no expression found in input"})
        missing = [p for p in ("start", "end", "step") if call.api == "query_range" and not call.params.get(p)]
        if missing:
            return _json(400, {"status": "error", "errorType": "bad_data",
                               "error": f"invalid parameter \"{missing[0]}\": missing"})
        return _json(200, {"status": "success", "data": {"resultType": RESULT_TYPE[call.api], "result": []}})
    return _json(200, {"status": "success", "data": []})


def _json(status: int, doc: dict[str, object], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode()

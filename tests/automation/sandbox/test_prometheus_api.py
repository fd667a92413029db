"""The sandbox's Managed Prometheus query API: the healer's and the scheduler's real clients, signed
with SigV4 through the automation role, read an (empty) workspace; an unknown workspace, a missing
query and a caller without aps:QueryMetrics are refused as AMP refuses them."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from gpufleet.automation.heal.sources import alert_signals, default_sources
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.schedule.signals import PrometheusSource, amp_query_base
from gpufleet.automation.usage.prometheus_query import PrometheusQuery
from gpufleet.infra.errors import AwsCallError


def query_base(sandbox) -> str:
    monitoring = load_inventory(sandbox.inventory).platform.monitoring
    assert monitoring is not None
    return amp_query_base(monitoring.remote_write_url, sandbox.endpoint)


def test_the_healer_reads_no_alerts_from_the_empty_workspace_through_the_automation_role(sandbox):
    sources = default_sources(sandbox.inventory, lambda stack, service: None, ["prometheus"])
    assert sources.prometheus is not None
    assert alert_signals(sources.prometheus) == {}
    queries = [r for r in sandbox.requests() if r["service"] == "aps"]
    assert [(q["action"], q["status"]) for q in queries] == [("QueryMetrics", 200)] * 2  # the Xid and the alerts query
    assert sandbox.client.iam()["denials"] == []


def test_query_range_answers_an_empty_matrix(sandbox):
    session = boto3.Session()
    query = PrometheusQuery(query_base(sandbox), region=session.region_name, credentials=session.get_credentials())
    now = time.time()
    assert query.query_range("sum(up)", now - 600, now, 60) == []


def test_an_unknown_workspace_is_404(sandbox):
    session = boto3.Session()
    base = query_base(sandbox).rsplit("/workspaces/", 1)[0] + "/workspaces/ws-00000000-0000-0000-0000-000000000000"
    source = PrometheusSource(base_url=base, region=session.region_name,
                              credentials=session.get_credentials().get_frozen_credentials())
    with pytest.raises(AwsCallError, match="answered 404"):
        source.instant_query("up")


def signed_get(url: str, credentials, region: str) -> tuple[int, bytes]:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(credentials, "aps", region).add_auth(request)
    prepared = request.prepare()
    try:
        with urllib.request.urlopen(urllib.request.Request(prepared.url, headers=dict(prepared.headers.items())),
                                    timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_missing_query_is_400_and_a_caller_without_query_metrics_is_403(sandbox):
    session = boto3.Session()
    status, body = signed_get(query_base(sandbox) + "/api/v1/query", session.get_credentials(), session.region_name)
    assert status == 400 and b"bad_data" in body
    # The operator's own key may only assume the automation role.
    operator = boto3.Session(aws_access_key_id=sandbox.operator_env["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=sandbox.operator_env["AWS_SECRET_ACCESS_KEY"],
                             region_name=session.region_name)
    status, body = signed_get(query_base(sandbox) + "/api/v1/query?query=up", operator.get_credentials(),
                              session.region_name)
    assert status == 403 and b"aps:QueryMetrics" in body
    (denial,) = sandbox.client.iam()["denials"]
    assert denial["iam_action"] == "aps:QueryMetrics"

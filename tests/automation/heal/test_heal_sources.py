"""The healer's sources beside the orchestrator: the sandbox's DescribeInstanceStatus (a check failed
through its control endpoint, as AWS fails one for an impaired host) and the real Prometheus binary
evaluating the real monitoring/rules/gpu.yaml over dcgm-exporter series it scrapes from 127.0.0.1,
read through the scheduler's query client."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpufleet.automation.heal.decide import NodeObservation
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.service import HealArgs, heal_pass
from gpufleet.automation.heal.sources import HealSources, alert_signals, impaired, with_signals
from gpufleet.automation.schedule.signals import PrometheusSource
from tests.automation.heal.test_heal_slurm import Fleet
from tests.conftest import REPO, require_binary
from tests.prometheus_harness import free_port, running_prometheus


def decision(report, node):
    return next(d for d in report.plan.decisions if d.node == node)


def test_an_impaired_status_check_replaces_the_node(eks, sandbox):
    ec2 = eks.clients("inference", "ec2")
    assert impaired(ec2, [eks.a, eks.b], "inference") == set()
    sandbox.client.set_instance_status(eks.a, "system", "impaired")
    sandbox.client.set_instance_status(eks.b, "instance", "impaired")
    assert impaired(ec2, [eks.a, eks.b], "inference") == {eks.a, eks.b}
    sandbox.client.set_instance_status(eks.b, "instance", "ok")
    assert impaired(ec2, [eks.a, eks.b], "inference") == {eks.a}

    report = eks.heal(sources=HealSources(ec2_for=lambda stack: eks.clients(stack, "ec2")))
    a = decision(report, "node-a")
    assert a.signals == ("ec2_status_failed",) and a.action is HealAction.REPLACE
    assert decision(report, "node-b").signals == ()
    (op,) = report.operations
    assert op["node"] == "node-a" and op["state"] == "DONE"
    assert sandbox.client.iam()["denials"] == []  # DescribeInstanceStatus through the operator role


def test_a_source_that_cannot_be_read_is_a_note_and_the_orchestrator_still_decides(eks, sandbox):
    sandbox.inject_fault("ec2", "DescribeInstanceStatus", "InternalError", count=20)
    eks.kube.nodes["node-a"]["metadata"]["labels"]["gpufleet.io/replace"] = "true"
    report = eks.heal(sources=HealSources(ec2_for=lambda stack: eks.clients(stack, "ec2"),
                                          prometheus=PrometheusSource(base_url=f"http://127.0.0.1:{free_port()}")))
    assert [n.split(" (")[0] for n in report.notes] == ["EC2 status checks not read", "Prometheus alerts not read"]
    assert decision(report, "node-a").action is HealAction.REPLACE and report.operations[0]["state"] == "DONE"


class Exporter(BaseHTTPRequestHandler):
    """dcgm-exporter's /metrics, as the collectors relabel it (account, pool, node_group, node, gpu)."""

    scrapes = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        Exporter.scrapes += 1
        at = 'account="111111111111",pool="h100-use1-az4",node_group="serve-h100"'
        text = (
            "# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"
            f'DCGM_FI_DEV_XID_ERRORS{{{at},node="node-a",gpu="3"}} 79\n'
            f'DCGM_FI_DEV_XID_ERRORS{{{at},node="node-a",gpu="0"}} 0\n'
            f'DCGM_FI_DEV_XID_ERRORS{{{at},node="node-d",gpu="1"}} 13\n'
            "# TYPE DCGM_FI_DEV_ROW_REMAP_FAILURE gauge\n"
            f'DCGM_FI_DEV_ROW_REMAP_FAILURE{{{at},node="node-b",gpu="5"}} 1\n'
            f'DCGM_FI_DEV_ROW_REMAP_FAILURE{{{at},node="node-a",gpu="5"}} 0\n'
            "# TYPE DCGM_FI_DEV_ECC_DBE_VOL_TOTAL counter\n"
            f'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{at},node="node-c",gpu="2"}} {Exporter.scrapes}\n'
            f'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{at},node="node-b",gpu="2"}} 0\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


@pytest.fixture
def prometheus(tmp_path):
    require_binary("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    # The real rules, evaluated every second instead of every minute (nothing else changed).
    rules = re.sub(r"(?m)^(\s+)interval: \S+$", r"\1interval: 1s", (REPO / "monitoring/rules/gpu.yaml").read_text())
    (tmp_path / "gpu.yaml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{tmp_path / 'gpu.yaml'}]\n"
        f"scrape_configs: [{{job_name: dcgm, static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]}}]\n")
    try:
        with running_prometheus(tmp_path) as url:
            yield PrometheusSource(base_url=url)
    finally:
        exporter.shutdown()
        exporter.server_close()


def test_the_central_prometheus_alerts_become_signals_with_their_xid_code(prometheus):
    wanted = {"GpuXidCritical", "GpuEccDoubleBitError", "GpuRowRemapFailure"}
    deadline = time.monotonic() + 90
    firing: set[str] = set()
    while time.monotonic() < deadline:
        firing = {labels["alertname"] for labels, _ in prometheus.instant_query('ALERTS{alertstate="firing"}')}
        if wanted <= firing:
            break
        time.sleep(0.5)
    assert wanted <= firing, firing
    got = alert_signals(prometheus)
    # node-a's Xid 79 with its code (the alert's own value is 1); node-d's Xid 13 is an application
    # fault the rule does not page; node-b's healthy ECC counter adds nothing.
    ours = "111111111111"
    assert got == {(ours, "node-a"): ("xid:79",), (ours, "node-b"): ("row_remap_failure",),
                   (ours, "node-c"): ("ecc_double_bit",)}, got
    # Matched within the node's account: another account's node-a is not this one.
    seen = [NodeObservation(node="node-a", instance_id="i-0a", group="inference/serve-h100", pool="p",
                            signals=("replace_requested",)),
            NodeObservation(node="node-a", instance_id="i-0b", group="training/train-h100", pool="p")]
    mine, theirs = with_signals(seen, {}, got, {"inference": ours, "training": "222222222222"})
    assert mine.signals == ("replace_requested", "xid:79") and theirs.signals == ()


@pytest.mark.slurm
def test_on_slurm_an_impaired_host_reaches_the_decision(sandbox, local_slurm, tmp_path):
    fleet = Fleet(sandbox, local_slurm, tmp_path)
    sandbox.client.set_instance_status(fleet.ids["node1"], "instance", "impaired")
    args = HealArgs(inventory=fleet.inventory_path, probe="local", dry_run=True)
    report = heal_pass(args, clients=fleet.clients, slurm=fleet.slurm, probes=lambda stack: fleet.probe,
                       journal=fleet.journal, sources=HealSources(ec2_for=lambda stack: fleet.clients(stack, "ec2")))
    node1 = decision(report, "node1")
    assert node1.signals == ("ec2_status_failed",) and node1.action is HealAction.REPLACE
    assert all(d.action is HealAction.LEAVE for d in report.plan.decisions if d.node != "node1")
    assert report.dry_run and not report.operations
    assert sandbox.client.iam()["denials"] == []  # DescribeInstanceStatus through the training operator role

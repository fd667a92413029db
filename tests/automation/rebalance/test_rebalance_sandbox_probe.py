"""docs/sandbox.md's rebalance exactly as written (no probe flag) completes, and its gate reports are
the node health code's: the sandbox runs the bundle's checks for each emulated instance it is asked
to probe (automation/sandbox/node_probe.py), with the instance's type and id."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpufleet.automation.rebalance.journal import Journal
from gpufleet.lifecycle.health.results import NodeReport, Status, Tier

pytestmark = pytest.mark.emulator

DOCS_COMMAND = "gpufleet rebalance --from training --to inference --nodes 2 --yes"


def test_the_documented_rebalance_passes_the_nodes_own_health_checks(fleet) -> None:
    with open(fleet.inventory_path) as f:
        assert json.load(f)["nodeProbeEndpoint"] == f"{fleet.endpoint}/_gpufleet/probe"
    argv = [sys.executable, "-m", "gpufleet.automation", *DOCS_COMMAND.split()[1:], "--inventory", str(fleet.inventory_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    (op,) = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table).list_ops()
    assert str(op.state) == "DONE"
    # the inference stack's healthGate (PHI: the deep tier too, DCGM level 2), journaled with the move
    assert {k: op.body["gate"][k] for k in ("probe", "tiers", "dcgmLevel", "stragglerFailPct")} == {
        "probe": "orchestrator", "tiers": ["quick", "deep"], "dcgmLevel": 2, "stragglerFailPct": 8}
    acquired = op.body["progress"]["acquired"]
    assert len(acquired) == 2

    probes = [p for p in fleet.control._call("GET", "probes")["probes"] if p["instanceId"] in acquired]
    assert sorted(p["instanceId"] for p in probes) == sorted(acquired)
    for probe in probes:
        assert probe["account"] == fleet.inventory.stacks["inference"].account_id
        report = NodeReport.from_dict(json.loads(probe["stdout"]))
        assert (report.node, report.instance_type, report.gpu_model, report.tiers) == (
            probe["instanceId"], "p5.48xlarge", "H100", (Tier.QUICK, Tier.DEEP))
        assert report.status is Status.PASS, report.failures
        expected = {r.check: r.expected for r in report.results if not r.device}
        assert expected["gpu_count"] == 8 and expected["efa"] == 32  # the bundle's catalog for p5.48xlarge
        (dcgm,) = [r for r in report.results if r.check == "dcgm_diag"]
        assert dcgm.status is Status.PASS and dcgm.detail.startswith("level 2: ")


def test_a_probe_of_an_instance_that_does_not_exist_is_404(fleet) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{fleet.endpoint}/_gpufleet/probe", method="POST",
                                     data=json.dumps({"instanceId": "i-0000000000000dead", "argv": []}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 404

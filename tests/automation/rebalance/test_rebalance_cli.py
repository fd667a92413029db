"""`gpufleet rebalance --json`: the same result object the tables show."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.emulator


def test_dry_run_json_is_the_plan_and_changes_nothing(fleet):
    before = fleet.desired()
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation", "rebalance", "--from", "training", "--to", "inference",
                           "--nodes", "2", "--json", "--inventory", str(fleet.inventory_path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["op_id"] is None and result["state"] == "DRY_RUN" and result["acquired"] == []
    plan = result["plan"]
    assert (plan["before"], plan["after"]) == ({"training": 5, "inference": 2}, {"training": 3, "inference": 4})
    assert len(plan["victims"]) == 2 and plan["source_asg"] == fleet.asg("train-h100")
    assert fleet.desired() == before
    writes = [r for r in fleet.control.requests() if not r["action"].startswith(("Describe", "Get", "Query", "Scan", "AssumeRole"))]
    assert writes == []

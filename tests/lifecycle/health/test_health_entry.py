"""`python -m gpufleet.lifecycle.health` as a node runs it: JSON, exit status, the Prometheus textfile."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fixture_runner import fake_tools

from gpufleet.lifecycle.health.metrics import render, write_textfile
from gpufleet.lifecycle.health.results import NodeReport, Status
from tests.conftest import REPO, require_binary


def run_entry(tmp_path, smi_fixture: str, *args: str) -> subprocess.CompletedProcess[str]:
    tools = fake_tools(tmp_path / "tools", smi_fixture)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "GPUFLEET_INSTANCE_TYPE": "p5.48xlarge"}
    return subprocess.run([sys.executable, "-m", "gpufleet.lifecycle.health", "--node", "p5-a", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def test_failing_node_exits_1_and_its_json_round_trips(tmp_path):
    done = run_entry(tmp_path, "nvidia_smi_q_h100x8_dbe.xml", "--json")
    assert done.returncode == 1, done.stderr
    report = NodeReport.from_dict(json.loads(done.stdout))
    assert report.node == "p5-a" and report.status is Status.FAIL and report.instance_type == "p5.48xlarge"
    assert [f.check for f in report.failures] == ["ecc"]
    assert NodeReport.from_dict(report.to_dict()) == report


def test_textfile_is_written_whole_and_passes_promtool(tmp_path):
    promtool = require_binary("promtool")
    textfile = tmp_path / "textfile" / "gpufleet_health.prom"
    done = run_entry(tmp_path, "nvidia_smi_q_h100x8_throttle.xml", "--textfile", str(textfile))
    assert done.returncode == 1 and "throttle" in done.stdout
    text = textfile.read_text()
    assert 'gpufleet_health_check_status{check="throttle",tier="quick",device="00000000:A8:00.0",action="ISOLATE"} 2' in text
    assert 'gpufleet_health_check_measured{check="efa",tier="quick",device="",unit="devices"} 32' in text
    assert 'gpufleet_health_node_status{tier="quick"} 2' in text
    assert [p.name for p in textfile.parent.iterdir()] == ["gpufleet_health.prom"]  # no temporary left behind
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_rewrite_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "h.prom"
    report = NodeReport.from_dict({"node": "n", "tiers": ["quick"], "results": [
        {"check": "ecc", "status": "PASS", "measured": 0, "expected": 0, "unit": "errors"}]})
    write_textfile(path, report)
    inode = path.stat().st_ino
    write_textfile(path, report)
    assert path.read_text() == render(report) and path.stat().st_ino != inode


@pytest.mark.parametrize("argv", [["--tiers", "fast"], ["--tiers", "deep", "--nnodes", "2"]])
def test_bad_arguments_exit_2(tmp_path, argv):
    done = run_entry(tmp_path, "nvidia_smi_q_h100x8_healthy.xml", *argv)
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr

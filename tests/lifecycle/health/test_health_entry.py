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



@pytest.mark.parametrize("columns", [80, 200])
def test_table_folds_detail_at_spaces_to_the_terminal_width(tmp_path, columns):
    tools = fake_tools(tmp_path / "tools", "nvidia_smi_q_h100x8_dbe.xml", dmesg_fixture="dmesg_xid_ecc.txt")
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "GPUFLEET_INSTANCE_TYPE": "p5.48xlarge",
           "COLUMNS": str(columns)}
    entry = [sys.executable, "-m", "gpufleet.lifecycle.health", "--node", "p5-a"]
    done = subprocess.run(entry, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, done.stdout
    doc = json.loads(subprocess.run([*entry, "--json"], capture_output=True, text=True, env=env, cwd=REPO,
                                    timeout=120).stdout)
    details = [r["detail"] for r in doc["results"]]
    assert max(len(d) for d in details) > 80 - 60  # some detail does not fit beside the row at 80 columns
    # Each detail's words come back whole and in order, folded at spaces only, on its row and the
    # lines under it before the next row (rows start at column 0, folded lines are indented).
    row_starts = [n for n, line in enumerate(lines) if line and not line.startswith(" ")][2:]  # node line, header
    assert len(row_starts) == len(details)
    spans = list(zip(row_starts, [*row_starts[1:], len(lines)], strict=True))
    for (start, end), detail, result in zip(spans, details, doc["results"], strict=True):
        block = lines[start:end]
        words = " ".join(block).split()
        assert words[:2] == [result["check"], result["device"] or "-"]
        if result["check"] not in ("disk_headroom", "memory_headroom"):  # this host's, changing between runs
            assert " ".join(words).endswith(" ".join(detail.split())), block
    if columns >= 200:
        assert all(end - start == 1 for start, end in spans), done.stdout

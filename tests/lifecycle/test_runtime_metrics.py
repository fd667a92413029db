"""The job's Prometheus textfile parses with promtool and carries what the JSON lines say."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from gpufleet.lifecycle.runtime.metrics import MetricsConfig, MetricsReporter
from tests.conftest import require_binary


def reporter(tmp_path) -> tuple[MetricsReporter, io.StringIO]:
    out = io.StringIO()
    cfg = MetricsConfig(job="demo", textfile=str(tmp_path / "node" / "train.prom"))
    return MetricsReporter(cfg, stream=out), out


def test_json_lines_and_textfile_agree(tmp_path):
    r, out = reporter(tmp_path)
    r.step(3, step_s=0.5, tokens=1000, loss=2.5, restarts=1)
    r.checkpoint(3, mode="async", save_s=1.25, stall_s=0.125)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event_type"] for e in events] == ["step", "checkpoint"]
    assert events[0]["tokens_per_s"] == 2000.0
    text = (tmp_path / "node" / "train.prom").read_text()
    assert 'gpufleet_train_tokens_per_second{job="demo"} 2000.0' in text
    assert 'gpufleet_checkpoint_stall_seconds{job="demo",mode="async"} 0.125' in text
    assert 'gpufleet_train_restarts{job="demo"} 1' in text
    assert not list((tmp_path / "node").glob(".*tmp")), "temporary file left next to the textfile"


def test_disabled_reporter_is_silent(tmp_path):
    out = io.StringIO()
    r = MetricsReporter(MetricsConfig(textfile=str(tmp_path / "x.prom"), enable=False), stream=out)
    r.step(1, step_s=0.1, tokens=10, loss=1.0, restarts=0)
    assert out.getvalue() == "" and not (tmp_path / "x.prom").exists()


@pytest.mark.promtool
def test_textfile_passes_promtool(tmp_path):
    promtool = require_binary("promtool")
    r, _ = reporter(tmp_path)
    r.step(1, step_s=0.2, tokens=100, loss=3.0, restarts=0)
    r.checkpoint(1, mode="sync", save_s=0.3, stall_s=0.3)
    text = (tmp_path / "node" / "train.prom").read_text()
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr

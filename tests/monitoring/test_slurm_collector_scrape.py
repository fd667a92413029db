"""The Slurm head's collector: scrape targets from slurmctld's node list, its prometheus.yml checked
by promtool in agent mode, and a real Prometheus scraping fake exporters through the rendered
jobs, so the labels the GPU rules see are the labels a Slurm node's series really get."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import urlopen

import pytest
import yaml

from gpufleet.infra import metrics_agent
from gpufleet.infra.slurm_collector import SlurmCollectorArgs, render_config
from gpufleet.lifecycle.slurm import scrape_targets
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
NODES = json.loads((REPO / "tests" / "fixtures" / "slurm" / "scontrol_show_nodes_23.11.json").read_text())
URL = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
ROLE = "arn:aws:iam::111111111111:role/gpufleet-metrics-remote-write"
ARGS = SlurmCollectorArgs(stack="training", remote_write_url=URL, remote_write_role_arn=ROLE,
                          pools_by_group={"train-h100": "h100-use1-az4", "cpu": "cpu-od"})


def rendered(targets_dir: Path) -> dict:
    return yaml.safe_load(render_config(ARGS, account_id="222222222222", region="us-east-1", remote_write_url=URL,
                                        remote_write_role_arn=ROLE, targets_dir=str(targets_dir)))


def test_targets_are_every_registered_node_with_its_group_and_gpus_only_where_there_are_gpus():
    targets = scrape_targets.file_sd(NODES)
    assert targets["node"] == [
        {"targets": ["10.0.33.5:9100"], "labels": {"node": "cpu-i-0bbb0000000000001", "node_group": "cpu"}},
        {"targets": ["10.0.32.17:9100"], "labels": {"node": "train-h100-i-0aaa0000000000001", "node_group": "train-h100"}},
        # DOWN stays a target: its up == 0 is what pages (NodeExporterDown).
        {"targets": ["10.0.32.18:9100"], "labels": {"node": "train-h100-i-0aaa0000000000002", "node_group": "train-h100"}},
    ]  # the FUTURE record (held, slurmd not yet registered) has no address to scrape
    assert [t["targets"] for t in targets["dcgm"]] == [["10.0.32.17:9400"], ["10.0.32.18:9400"]]


def _fake_scontrol(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(f"#!/bin/bash\n{body}\n")
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_the_timer_command_writes_the_files_from_scontrol_and_keeps_them_when_it_fails(tmp_path: Path):
    """``python -m gpufleet.lifecycle.slurm.scrape_targets DIR`` as the head's timer runs it, with
    scontrol faked at the PATH boundary (it checks its arguments as the real one would be called)."""
    fixture = REPO / "tests" / "fixtures" / "slurm" / "scontrol_show_nodes_23.11.json"
    targets = tmp_path / "targets"
    env = _fake_scontrol(tmp_path, f'[ "$*" = "show nodes --json" ] || exit 1; cat {fixture}')
    run = [sys.executable, "-m", "gpufleet.lifecycle.slurm.scrape_targets", str(targets)]
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "dcgm.json: 2 targets" in done.stdout
    before = (targets / "dcgm.json").read_text()
    env = _fake_scontrol(tmp_path, 'echo "slurm_load_node error: Unable to contact slurm controller" >&2; exit 1')
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Unable to contact" in done.stderr
    assert (targets / "dcgm.json").read_text() == before


def test_scontrol_output_without_a_node_list_is_refused():
    with pytest.raises(ValueError, match="no 'nodes' list"):
        scrape_targets.file_sd({"errors": ["slurm_load_node: Unable to contact slurm controller"]})


def test_written_files_replace_the_old_ones_whole(tmp_path: Path):
    scrape_targets.write_files(scrape_targets.file_sd(NODES), tmp_path)
    assert len(json.loads((tmp_path / "dcgm.json").read_text())) == 2
    scrape_targets.write_files(scrape_targets.file_sd({"nodes": []}), tmp_path)
    assert json.loads((tmp_path / "dcgm.json").read_text()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcgm.json", "node.json"]


def test_the_config_remote_writes_through_the_collector_profile_and_labels_pools_by_group(tmp_path: Path):
    config = rendered(tmp_path)
    [remote] = config["remote_write"]
    assert remote["sigv4"] == {"region": "us-east-1", "role_arn": ROLE, "profile": metrics_agent.COLLECTOR_PROFILE}
    assert config["global"]["external_labels"] == {"account": "222222222222", "stack": "training"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"node", "dcgm"}
    assert jobs["dcgm"]["file_sd_configs"] == [{"files": [f"{tmp_path}/dcgm.json"], "refresh_interval": "1m"}]
    profile = metrics_agent.collector_aws_config(region="us-east-1",
                                                 collector_role_arn="arn:aws:iam::222222222222:role/c")
    assert f"[profile {metrics_agent.COLLECTOR_PROFILE}]" in profile
    assert "credential_source = Ec2InstanceMetadata" in profile


@pytest.mark.promtool
def test_promtool_accepts_the_agent_config_and_reads_the_target_files(tmp_path: Path):
    targets = tmp_path / "targets"
    scrape_targets.write_files(scrape_targets.file_sd(NODES), targets)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered(targets)))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([require_binary("promtool"), "check", "config", "--agent", str(path)],
                              capture_output=True, text=True, timeout=60)

    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool reads the discovery files: a broken one fails the check.
    (targets / "dcgm.json").write_text(json.dumps([{"targets": ["10.0.32.17:9400"], "labels": {"bad-name": "x"}}]))
    result = check()
    assert result.returncode != 0 and "dcgm.json" in result.stdout + result.stderr


# -- a real Prometheus scraping through the rendered jobs -----------------------------------------

DCGM_TEXT = ('# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n'
             'DCGM_FI_DEV_XID_ERRORS{gpu="3",UUID="GPU-1",modelName="NVIDIA H100 80GB HBM3",Hostname="ip-10-0-32-17"} 79\n')


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = DCGM_TEXT.encode() if self.path == "/metrics" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.promtool
def test_a_real_prometheus_labels_slurm_series_as_the_gpu_rules_expect(tmp_path: Path, exporter: int):
    """The rendered jobs and relabelling, run by Prometheus itself (server mode, so the labels can be
    queried; remote write left out: it would leave 127.0.0.0/8). The labels found are the ones
    monitoring/tests/slurm_test.yaml feeds the GPU rules."""
    binary = shutil.which("prometheus") or pytest.skip("prometheus not installed")
    nodes = {"nodes": [NODES["nodes"][0] | {"address": "127.0.0.1"}]}
    targets = tmp_path / "targets"
    scrape_targets.write_files(scrape_targets.file_sd(nodes, {"dcgm": exporter}), targets)
    config = rendered(targets)
    del config["remote_write"]
    config["global"]["scrape_interval"] = "1s"  # the test's pace; the jobs are as rendered
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] == "dcgm"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    process = subprocess.Popen([binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        series: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while not series and time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
            try:
                with urlopen(f"http://127.0.0.1:{port}/api/v1/series?match[]=DCGM_FI_DEV_XID_ERRORS", timeout=5) as r:
                    series = json.loads(r.read())["data"]
            except OSError:
                continue
        assert series, process.stderr.read().decode()[-2000:] if process.poll() is not None else "no series in 60 s"
    finally:
        process.terminate()
        process.wait(timeout=30)
    [labels] = series
    expected = {"job": "dcgm", "instance": f"127.0.0.1:{exporter}", "node": "train-h100-i-0aaa0000000000001",
                "node_group": "train-h100", "pool": "h100-use1-az4", "gpu": "3"}
    assert {k: labels.get(k) for k in expected} == expected
    unit = yaml.safe_load((REPO / "monitoring" / "tests" / "slurm_test.yaml").read_text())
    fed = unit["tests"][0]["input_series"][0]["series"]
    for key in ("job", "node", "node_group", "pool", "account", "stack"):
        assert f'{key}="' in fed, key

"""`gpufleet sandbox up|status|env|down` as a user runs them: real processes, a detached server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.emulator


def gpufleet(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full.update(env or {}, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "gpufleet.automation", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path


def test_up_status_env_down(workdir: Path):
    env = {"PYTHONPATH": str(REPO)}
    up = gpufleet("sandbox", "up", "--json", cwd=workdir, env=env)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    pid = info["pid"]
    try:
        assert info["state"] == "running" and alive(pid)
        assert "rendered" in up.stderr and "training: account 222222222222" in up.stderr  # progress
        assert Path(info["ids"]) == (workdir / ".gpufleet" / "ids.json").resolve()
        assert set(info["timings"]) == {"render_s", "server_s", "apply_s", "total_s"}
        assert Path(info["inventory"]) == (workdir / ".gpufleet" / "inventory.json").resolve()
        assert {r["name"]: (r["total"], r["used"]) for r in info["reservations"]} == {
            "h100-use1-az4": (8, 7), "h200-use1-az6": (4, 4)}

        again = gpufleet("sandbox", "up", "--json", cwd=workdir, env=env)
        assert json.loads(again.stdout)["already_running"] is True and json.loads(again.stdout)["pid"] == pid

        lines = gpufleet("sandbox", "env", cwd=workdir, env=env).stdout.splitlines()
        exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert exported["AWS_ENDPOINT_URL"] == info["endpoint"]
        status = gpufleet("status", "--json", cwd=workdir, env={**env, **exported})
        assert status.returncode == 0, status.stderr
        assert [p["free"] for p in json.loads(status.stdout)["pools"]] == [1, 0]

        report = gpufleet("sandbox", "status", cwd=workdir, env=env)
        assert report.returncode == 0 and f"running at {info['endpoint']} (pid {pid})" in report.stdout
    finally:
        down = gpufleet("sandbox", "down", "--json", cwd=workdir, env=env)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["state"] == "stopped"
    assert not alive(pid)
    assert not (workdir / ".gpufleet" / "inventory.json").exists()
    assert not (workdir / ".gpufleet" / "ids.json").exists()
    stopped = gpufleet("sandbox", "status", "--json", cwd=workdir, env=env)
    assert stopped.returncode == 1 and json.loads(stopped.stdout)["state"] == "stopped"


def test_a_killed_server_is_reported_stale_and_down_cleans_up(workdir: Path):
    env = {"PYTHONPATH": str(REPO)}
    up = gpufleet("sandbox", "up", "--json", cwd=workdir, env=env)
    assert up.returncode == 0, up.stderr
    pid = json.loads(up.stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.05)
    stale = gpufleet("sandbox", "status", "--json", cwd=workdir, env=env)
    assert stale.returncode == 1 and json.loads(stale.stdout)["state"] == "stale"
    env_out = gpufleet("sandbox", "env", cwd=workdir, env=env)
    assert env_out.returncode == 4 and "stale" in env_out.stderr
    assert json.loads(gpufleet("sandbox", "down", "--json", cwd=workdir, env=env).stdout)["state"] == "stopped"


def test_a_bad_stack_file_exits_2_and_starts_nothing(workdir: Path):
    path = workdir / "stacks" / "Pulumi.training.yaml"
    path.write_text(path.read_text().replace("initialNodes: 5", "initialNodes: five"))
    result = gpufleet("sandbox", "up", cwd=workdir, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "Pulumi.training.yaml" in result.stderr and "initialNodes" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / ".gpufleet" / "sandbox.json").exists()

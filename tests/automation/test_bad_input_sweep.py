"""The bad-input sweep: stack files, job files, inventory, sandbox state and every flag, through
the CLI against the sandbox. Each case exits 2 naming what is wrong, prints no traceback, and
leaves the sandbox's request log empty: nothing was called, so nothing is half done."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from tests.conftest import REPO

pytestmark = pytest.mark.emulator

runner = CliRunner()
MOVE = ["rebalance", "--from", "training", "--to", "inference", "--nodes", "1", "--yes"]
JOB = {"name": "demo", "backend": "slurm", "nodes": 1, "gpus_per_node": 0,
       "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference", "checkpoint_dir": "/fsx/ckpt/demo"}


def job_file(tmp: Path, text: str) -> str:
    path = tmp / "job.yaml"
    path.write_text(text)
    return str(path)


def inventory_with(sandbox, tmp: Path, edit: Callable[[dict], None]) -> str:
    doc = json.loads(sandbox.inventory.read_text())
    edit(doc)
    path = tmp / "inventory.json"
    path.write_text(json.dumps(doc))
    return str(path)


def stacks_with(tmp: Path, name: str, old: str, new: str) -> str:
    target = tmp / "stacks"
    shutil.copytree(REPO / "stacks", target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = target / f"Pulumi.{name}.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    return str(target)


def state_dir_with(tmp: Path, state: object) -> str:
    (tmp / "state").mkdir()
    (tmp / "state" / "sandbox.json").write_text(json.dumps(state))
    return str(tmp / "state")


def first_group(doc: dict, **fields) -> None:
    next(s for s in doc["stacks"].values() if s.get("nodeGroups"))["nodeGroups"][0].update(fields)


CASES: dict[str, tuple[Callable[..., list[str]], str]] = {
    # flags
    "tiers": (lambda s, t: [*MOVE, "--tiers", "quick,bogus", "--inventory", str(s.inventory)], "--tiers 'quick,bogus'"),
    "probe": (lambda s, t: [*MOVE, "--probe", "pigeon", "--inventory", str(s.inventory)], "'pigeon'"),
    "pool": (lambda s, t: [*MOVE, "--pool", "nope", "--inventory", str(s.inventory)], "'nope'"),
    "lease": (lambda s, t: [*MOVE, "--lease-seconds", "0", "--inventory", str(s.inventory)], "--lease-seconds"),
    "health-probe": (lambda s, t: ["health", "--probe", "x", "--inventory", str(s.inventory)], "--probe 'x'"),
    "health-pool": (lambda s, t: ["health", "--pool", "nope", "--probe", "local", "--inventory", str(s.inventory)], "'nope'"),
    "health-bound": (lambda s, t: ["health", "--replace", "--max-per-group", "0", "--probe", "local",
                                   "--inventory", str(s.inventory)], "--max-per-group"),
    "health-grace": (lambda s, t: ["health", "--replace", "--checkpoint-grace", "-5", "--probe", "local",
                                   "--inventory", str(s.inventory)], "--checkpoint-grace -5: expected 0 to 3600 seconds"),
    # inventory
    "inventory-dir": (lambda s, t: [*MOVE, "--inventory", str(t)], "is a directory"),
    "inventory-bytes": (lambda s, t: [*MOVE, "--inventory", str(_bytes(t / "inv.json"))], "not UTF-8"),
    "inventory-no-stacks": (lambda s, t: [*MOVE, "--inventory", inventory_with(s, t, lambda d: d.pop("stacks"))],
                            "stacks"),
    "inventory-mistyped": (lambda s, t: [*MOVE, "--inventory", inventory_with(
        s, t, lambda d: first_group(d, maxNodes="eight"))], "maxNodes"),
    "status-inventory-dir": (lambda s, t: ["status", "--inventory", str(t)], "is a directory"),
    # job files
    "job-newline": (lambda s, t: ["launch", job_file(t, yaml.safe_dump({**JOB, "partition": "p\ntouch /tmp/x"}))],
                    "partition"),
    "job-duplicate": (lambda s, t: ["launch", job_file(t, "name: demo\nname: other\n")], "lines 1 and 2"),
    "job-dir": (lambda s, t: ["launch", str(t)], "is a directory"),
    # stack files
    "stack-duplicate": (lambda s, t: ["plan", "--stacks-dir", stacks_with(
        t, "inference", "  gpufleet:holdsPhi: true\n", "  gpufleet:holdsPhi: true\n  gpufleet:holdsPhi: false\n")],
        "duplicate key"),
    "stack-az-region": (lambda s, t: ["plan", "--stacks-dir", stacks_with(t, "training", "- use1-az4", "- usw2-az1")],
                        "not an AZ ID of us-east-1"),
    # sandbox state
    "sandbox-state": (lambda s, t: ["sandbox", "status", "--state-dir", state_dir_with(
        t, {"state": "running", "pid": "12", "endpoint": "http://127.0.0.1:1"})], "pid"),
}


def _bytes(path: Path) -> Path:
    path.write_bytes(b'{"version": "caf\xe9"}')
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_no_traceback_and_no_call(sandbox, tmp_path, case):
    argv, needle = CASES[case]
    args = argv(sandbox, tmp_path)
    sandbox.reset_log()
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and needle in result.stderr, result.stderr
    assert sandbox.requests() == [], [r["action"] for r in sandbox.requests()]

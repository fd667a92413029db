"""State is found as Pulumi finds its project: up from the current directory to Pulumi.yaml, or
where GPUFLEET_STATE_DIR / GPUFLEET_INVENTORY say; `sandbox env --unset`; the sandbox hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.automation import project
from gpufleet.automation.cli.main import app

runner = CliRunner()


def test_the_state_is_next_to_the_nearest_pulumi_yaml(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text("name: gpufleet\nruntime: python\n")
    deep = tmp_path / "docs" / "img"
    deep.mkdir(parents=True)
    assert project.project_root(deep) == tmp_path.resolve()
    assert project.state_dir({}, deep) == tmp_path.resolve() / ".gpufleet"
    assert project.inventory_path({}, deep) == tmp_path.resolve() / ".gpufleet" / "inventory.json"
    assert project.stacks_dir(deep) == tmp_path.resolve() / "stacks"


def test_outside_a_project_the_current_directory_stands_in(tmp_path: Path):
    assert project.project_root(tmp_path) is None or (project.project_root(tmp_path) / "Pulumi.yaml").is_file()
    if project.project_root(tmp_path) is None:
        assert project.state_dir({}, tmp_path) == tmp_path / ".gpufleet"


def test_the_environment_overrides(tmp_path: Path):
    env = {"GPUFLEET_STATE_DIR": str(tmp_path / "s")}
    assert project.state_dir(env, tmp_path) == tmp_path / "s"
    assert project.inventory_path(env, tmp_path) == tmp_path / "s" / "inventory.json"
    env["GPUFLEET_INVENTORY"] = str(tmp_path / "inv.json")
    assert project.inventory_path(env, tmp_path) == tmp_path / "inv.json"


def test_sandbox_commands_from_a_subdirectory_see_the_projects_sandbox(sandbox, monkeypatch):
    root = sandbox.state_dir.parent  # holds stacks/ and .gpufleet/
    (root / "Pulumi.yaml").write_text("name: gpufleet\nruntime: python\n")
    (root / "docs").mkdir(exist_ok=True)
    monkeypatch.chdir(root / "docs")
    monkeypatch.delenv("GPUFLEET_STATE_DIR", raising=False)
    monkeypatch.delenv("GPUFLEET_INVENTORY", raising=False)
    done = runner.invoke(app, ["sandbox", "status", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["endpoint"] == sandbox.endpoint
    # and the inventory there is the default of every command
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    assert {p["name"] for p in json.loads(status.stdout)["pools"]} == {"h100-use1-az4", "h200-use1-az6"}


def test_the_state_dir_from_the_environment(sandbox, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUFLEET_STATE_DIR", str(sandbox.state_dir))
    done = runner.invoke(app, ["sandbox", "status", "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["endpoint"] == sandbox.endpoint


def test_sandbox_env_unset_names_what_env_exports(sandbox):
    exported = runner.invoke(app, ["sandbox", "env", "--state-dir", str(sandbox.state_dir)]).stdout.splitlines()
    names = [line.removeprefix("export ").split("=")[0] for line in exported]
    unset = runner.invoke(app, ["sandbox", "env", "--unset"])
    assert unset.exit_code == 0 and unset.stdout.strip() == "unset " + " ".join(names)


def test_status_without_credentials_but_a_running_sandbox_says_to_eval_its_env(sandbox, monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPUFLEET_STATE_DIR", str(sandbox.state_dir))
    done = runner.invoke(app, ["status", "--inventory", str(sandbox.inventory), "--json"])
    assert done.exit_code == 3, done.output
    error = json.loads(done.stdout)["error"]
    assert error["message"].startswith("no AWS credentials")
    assert f"a sandbox is running at {sandbox.endpoint}" in error["hint"]
    assert 'eval "$(gpufleet sandbox env)"' in error["hint"]


@pytest.mark.parametrize("argv", [
    ["status"], ["rebalance", "ls"], ["health"], ["usage"], ["heal", "--dry-run"],
    ["schedule", "reconcile"], ["schedule", "run", "--passes", "1"],
])
def test_every_command_reading_the_inventory_follows_gpufleet_inventory(argv, monkeypatch, tmp_path):
    """They all take the inventory where GPUFLEET_INVENTORY says (before, usage, heal and schedule
    read .gpufleet/inventory.json of the current directory whatever it said)."""
    missing = tmp_path / "elsewhere" / "inventory.json"
    monkeypatch.setenv("GPUFLEET_INVENTORY", str(missing))
    result = runner.invoke(app, [*argv, "--json"])
    assert result.exit_code == 2, result.output
    assert str(missing) in json.loads(result.stdout)["error"]["message"], result.stdout

"""The CLI's manners: --version, -h everywhere, readable placeholders, one spelling for tiers,
--profile wherever AWS is called, and every failure as one error line (an error object under --json)."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app

runner = CliRunner()
ROOT = get_command(app)
AWS_COMMANDS = [["status"], ["plan"], ["health"], ["rebalance"], ["inventory", "collect"]]


def commands(group=ROOT, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield [*path, name]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"gpufleet {metadata.version('gpufleet')}"


def test_completion_is_offered():
    result = runner.invoke(app, ["-h"])
    assert result.exit_code == 0 and "--install-completion" in result.stdout


@pytest.mark.parametrize("path", list(commands()), ids=" ".join)
def test_every_command_has_short_help_with_readable_placeholders(path):
    result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Usage: gpufleet " + " ".join(path) in result.stdout
    options = result.stdout.split("Options:")[1]
    for typed in ("<bool>", "<path>", "<str>", "<int>", "<list["):
        assert typed not in options, (typed, result.stdout)


@pytest.mark.parametrize("path", AWS_COMMANDS, ids=" ".join)
def test_every_command_that_calls_aws_takes_a_profile(path):
    result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "200"})
    assert "--profile NAME" in result.stdout, result.stdout


@pytest.mark.parametrize("argv", [["health", "--quick"], ["health", "--deep"], ["rebalance", "--gate-tiers", "quick"]])
def test_old_tier_spellings_are_gone(argv):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and "No such option" in result.stderr


@pytest.mark.parametrize("argv", [["health", "--tiers", "quick,fast"], ["rebalance", "--tiers", "fast"]])
def test_a_bad_tier_exits_2_naming_it(argv):
    result = runner.invoke(app, [*argv, "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert "'fast'" in error["message"] and "--tiers" in error["message"] and error["code"] == 2


@pytest.mark.parametrize(("argv", "command"), [
    (["status", "--bogus"], 1),
    (["rebalance", "--nodes", "x"], 1),
    (["health", "-o", "tall"], 1),
    (["sandbox", "status", "--state-dir"], 2),
])
def test_a_usage_error_is_one_error_line_and_a_hint(argv, command):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: see `gpufleet "), lines
    assert result.stdout == ""
    as_json = runner.invoke(app, [*argv[:command], "--json", *argv[command:]])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["message"] == lines[0].removeprefix("error: ")


def test_jobs_on_eks_without_a_kubeconfig_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = runner.invoke(app, ["jobs", "ls", "--backend", "eks"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: no kube context 'gpufleet-training'"), lines
    assert lines[1].startswith("hint: ")

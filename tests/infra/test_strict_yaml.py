"""Stack and job files are read strictly: a duplicate key names both lines; a directory, an
unreadable or a non-UTF-8 file names the file; `gpufleet plan` and `launch` exit 2 without a
traceback. Before: the last of two keys won silently (``holdsPhi: true`` then ``false`` turned
the PHI guardrails off with 0 findings) and the other cases ended in tracebacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.jobs.spec import load_job
from gpufleet.infra import strict_yaml
from gpufleet.infra.errors import ConfigError
from tests.reference_stacks import copy_stacks

runner = CliRunner()


@pytest.fixture
def stacks(tmp_path):
    return copy_stacks(tmp_path / "stacks")


def test_a_duplicate_key_names_both_lines(tmp_path):
    path = tmp_path / "Pulumi.inference.yaml"
    path.write_text("config:\n  gpufleet:holdsPhi: true\n  aws:region: us-east-1\n  gpufleet:holdsPhi: false\n")
    with pytest.raises(ConfigError) as caught:
        strict_yaml.load(path, "stack file")
    assert caught.value.key == "gpufleet:holdsPhi" and "lines 2 and 4" in caught.value.problem
    assert caught.value.source == str(path) and caught.value.code == 2
    nested = tmp_path / "job.yaml"
    nested.write_text("env:\n  A: '1'\n  A: '2'\n")
    with pytest.raises(ConfigError, match="lines 2 and 3"):
        load_job(nested)


def test_plan_refuses_a_stack_file_that_turns_holds_phi_off_twice(stacks):
    path = stacks / "Pulumi.inference.yaml"
    path.write_text(path.read_text().replace("  gpufleet:holdsPhi: true\n",
                                             "  gpufleet:holdsPhi: true\n  gpufleet:holdsPhi: false\n", 1))
    result = runner.invoke(app, ["plan", "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    assert "gpufleet:holdsPhi" in result.stderr and "duplicate key" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["directory", "not-utf8", "unreadable"])
def test_bad_file_arguments_exit_2_naming_the_file(tmp_path, kind):
    path = tmp_path / "job.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"name: caf\xe9\n")
    else:
        if os.geteuid() == 0:
            return unreadable_as_nobody()
        path.write_text("name: x\n")
        path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert caught.value.source == str(path) and caught.value.key == "(file)"
    result = runner.invoke(app, ["launch", str(path), "--dry-run"])
    assert result.exit_code == 2 and str(path) in result.stderr and "Traceback" not in result.output


def unreadable_as_nobody() -> None:
    """Root reads every file: the unreadable case runs the CLI as root without the capabilities
    that override file modes (util-linux's setpriv drops them from the bounding set), on a file of
    mode 0."""
    import shutil
    import subprocess
    import sys
    import tempfile

    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to read as root without CAP_DAC_OVERRIDE"
    where = Path(tempfile.mkdtemp(prefix="gpufleet-unreadable-"))
    path = where / "job.yaml"
    try:
        path.write_text("name: x\n")
        path.chmod(0)
        done = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                               "gpufleet.automation", "launch", str(path), "--dry-run"],
                              cwd=where, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert str(path) in done.stderr and "Traceback" not in done.stderr
    finally:
        path.unlink(missing_ok=True)
        where.rmdir()

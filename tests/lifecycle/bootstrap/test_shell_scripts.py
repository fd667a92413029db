"""Every shell script under lifecycle/ passes shellcheck."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_binary

LIFECYCLE = Path(__file__).resolve().parents[3] / "lifecycle"
SCRIPTS = sorted(LIFECYCLE.rglob("*.sh"))


def test_there_are_scripts_to_check() -> None:
    assert {"on_create.sh", "lib.sh", "70-join.sh", "prolog.sh"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(LIFECYCLE)))
def test_shellcheck_passes(script: Path) -> None:
    shellcheck = require_binary("shellcheck")
    done = subprocess.run([shellcheck, "-x", "--severity=style", script.name], cwd=script.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rendered_user_data_passes_shellcheck() -> None:
    shellcheck = require_binary("shellcheck")
    golden = Path(__file__).resolve().parents[2] / "golden" / "user_data.slurm-compute.sh"
    done = subprocess.run([shellcheck, "--severity=style", str(golden)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

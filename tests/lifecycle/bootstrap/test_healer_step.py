"""75-healer on the head node, for real in a temporary root, with systemctl faked at the PATH
boundary: the healer archive the program uploads is installed beside the bundle and
gpufleet-healer.service is rendered, checked by systemd's own parser (systemd-analyze verify,
and its offline security review) and by its keys."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.infra.healer_archive import ARCHIVE_DIR, healer_files

REPO = Path(__file__).resolve().parents[3]
STEP = REPO / "lifecycle" / "bootstrap" / "steps" / "75-healer.sh"
UNIT = "etc/systemd/system/gpufleet-healer.service"
INVENTORY = '{"version": 1}'


@pytest.fixture
def head(tmp_path: Path) -> dict[str, Path]:
    lifecycle = tmp_path / "opt/gpufleet/gpufleet/lifecycle"
    for rel, text in healer_files(INVENTORY).items():
        (lifecycle / ARCHIVE_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
        (lifecycle / ARCHIVE_DIR / rel).write_text(text)
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text('#!/bin/bash\necho "systemctl $*" >> "$FAKE_CALLS"\n')
    (bin_dir / "systemctl").chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    return {"lifecycle": lifecycle, "root": root, "bin": bin_dir, "calls": tmp_path / "calls"}


def step(head: dict[str, Path], role: str = "slurm-head", **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{head['bin']}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "GPUFLEET_ROLE": role,
            "GPUFLEET_LIFECYCLE_DIR": str(head["lifecycle"]), "GPUFLEET_ROOT": str(head["root"]),
            "GPUFLEET_STEP": "75-healer", "FAKE_CALLS": str(head["calls"]),
            # The host's python3 with boto3; this venv's interpreter has it too.
            "GPUFLEET_HEALER_PYTHON": sys.executable}
    return subprocess.run(["bash", str(STEP)], env={**base, **env}, capture_output=True, text=True, timeout=60)


def unit(head: dict[str, Path]) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=True, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parsed.read_string((head["root"] / UNIT).read_text())
    return parsed


def test_the_head_installs_the_archive_and_runs_the_healer_as_a_hardened_service(head) -> None:
    done = step(head, GPUFLEET_HEALER_INTERVAL_S="45")
    assert done.returncode == 0, done.stderr
    installed = head["root"] / "opt/gpufleet/healer"
    assert (installed / "gpufleet/automation/heal/__main__.py").read_text() == \
        (head["lifecycle"] / "healer/gpufleet/automation/heal/__main__.py").read_text()
    assert (installed / "fleet/inventory.json").read_text() == INVENTORY
    service = unit(head)["Service"]
    argv = service["ExecStart"].split()
    assert argv[:3] == [sys.executable, "-m", "gpufleet.automation.heal"]
    assert argv[argv.index("--interval") + 1] == "45" and "--loop" in argv
    assert argv[argv.index("--inventory") + 1] == "/opt/gpufleet/healer/fleet/inventory.json"
    # The head's own role, its own stack and the journal only (automation/aws.py, docs/security.md).
    assert argv[argv.index("--identity") + 1] == "instance"
    assert service["Environment"].split()[0] == "PYTHONPATH=/opt/gpufleet/healer"
    assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
    assert (service["NoNewPrivileges"], service["ProtectSystem"], service["ProtectHome"]) == ("yes", "strict", "yes")
    assert service["CapabilityBoundingSet"] == "" and "User" not in service  # root: IMDS and Slurm admin, no capabilities
    assert "slurmctld.service" in unit(head)["Unit"]["After"].split()
    assert unit(head)["Install"]["WantedBy"] == "multi-user.target"
    assert head["calls"].read_text().splitlines() == ["systemctl daemon-reload",
                                                      "systemctl enable --now gpufleet-healer.service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_line_of_the_unit(head, tmp_path) -> None:
    assert step(head).returncode == 0
    copy = tmp_path / "gpufleet-healer.service"
    shutil.copy(head["root"] / UNIT, copy)
    # verify reports an unknown key or a bad value on stderr and still exits 0: both must be empty.
    verified = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")
    review = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=50", str(copy)],
                            capture_output=True, text=True, timeout=60)
    assert review.returncode == 0, review.stdout + review.stderr


def test_a_second_run_replaces_the_installed_archive_whole(head) -> None:
    assert step(head).returncode == 0
    stale = head["root"] / "opt/gpufleet/healer/gpufleet/automation/heal/removed_module.py"
    stale.write_text("")
    assert step(head).returncode == 0
    assert not stale.exists()


def test_other_roles_and_a_bundle_without_the_archive_run_no_healer(head) -> None:
    skipped = step(head, role="slurm-compute")
    assert skipped.returncode == 0 and "runs no healer" in skipped.stderr
    shutil.rmtree(head["lifecycle"] / ARCHIVE_DIR)
    absent = step(head)
    assert absent.returncode == 0 and "no healer archive" in absent.stderr
    assert not (head["root"] / UNIT).exists() and not head["calls"].exists()


def test_a_bad_interval_or_a_python_without_boto3_fails_before_anything_is_written(head, tmp_path) -> None:
    bad = step(head, GPUFLEET_HEALER_INTERVAL_S="0.5")
    assert bad.returncode == 2 and "GPUFLEET_HEALER_INTERVAL_S=0.5" in bad.stderr
    assert step(head, GPUFLEET_HEALER_INTERVAL_S="7200").returncode == 2
    no_boto = tmp_path / "python-without-boto3"
    no_boto.write_text(f"#!/bin/bash\nexec {sys.executable} -I -S \"$@\"\n")
    no_boto.chmod(0o755)
    missing = step(head, GPUFLEET_HEALER_PYTHON=str(no_boto))
    assert missing.returncode == 1 and "python3-boto3" in missing.stderr
    assert not (head["root"] / UNIT).exists() and not (head["root"] / "opt/gpufleet/healer").exists()

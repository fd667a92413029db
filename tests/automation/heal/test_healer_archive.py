"""The healer's archive runs on its own: built by the program's code into an empty directory, its
entry point runs a real pass on the real local Slurm against the sandbox with an interpreter that
has only the archive and what the Slurm head provides besides Python (boto3, botocore and their
dependencies: Ubuntu's python3-boto3): no pulumi, typer, rich, moto, torch, nor this checkout's
gpufleet; and with the privileges its systemd unit leaves it (no capability, no new privileges)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra.healer_archive import ENTRY_MODULE, INVENTORY, healer_files
from tests.automation.heal.test_heal_slurm import Fleet
from tests.bare_python import link_packages, run_bare, unpack
from tests.lifecycle.health.fixture_runner import fake_tools

HOST_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
ABSENT = ("pulumi", "pulumi_aws", "typer", "rich", "moto", "torch", "numpy", "kubernetes", "matplotlib")


@pytest.fixture(scope="module")
def host_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return link_packages(HOST_PACKAGES, tmp_path_factory.mktemp("head-site"))


def bare(archive: Path, site: Path, code: str, env: dict[str, str], timeout: float = 600,
         wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # The working directory is not the archive (as the unit's): `python -m` children put theirs first.
    return run_bare(archive, site, code, env=env, timeout=timeout, cwd=archive.parent, wrapper=wrapper)


UNIT_PRIVILEGES = ("setpriv", "--no-new-privs", "--bounding-set", "-all", "--inh-caps", "-all")
"""What gpufleet-healer.service leaves root (NoNewPrivileges=yes, CapabilityBoundingSet=): no
capability after exec. The pass must still drain and update nodes through scontrol and munge."""


def test_without_an_inventory_a_pass_fails_naming_the_file(tmp_path, host_site):
    archive = unpack(healer_files(None), tmp_path / "healer")
    done = bare(archive, host_site, f"import runpy; sys.argv = ['heal', '--inventory', {str(archive / INVENTORY)!r}]\n"
                f"runpy.run_module({ENTRY_MODULE.rpartition('.')[0]!r}, run_name='__main__')",
                env={"PATH": os.environ["PATH"]})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert str(archive / INVENTORY) in done.stderr and not done.stdout, done.stderr


def test_bad_options_exit_2_before_any_pass(tmp_path, host_site):
    archive = unpack(healer_files(None), tmp_path / "healer")
    run = f"import runpy; runpy.run_module({ENTRY_MODULE.rpartition('.')[0]!r}, run_name='__main__')"
    interval = bare(archive, host_site, "sys.argv = ['heal', '--loop', '--interval', '0.01']\n" + run,
                    env={"PATH": os.environ["PATH"]})
    assert interval.returncode == 2 and "--interval 0.01" in interval.stderr and not interval.stdout
    orchestrator = bare(archive, host_site, "sys.argv = ['heal', '--orchestrator', 'nomad']\n" + run,
                        env={"PATH": os.environ["PATH"]})
    assert orchestrator.returncode == 2 and "nomad" in orchestrator.stderr


@pytest.mark.slurm
def test_a_real_pass_from_the_archive_replaces_a_requested_node(sandbox, local_slurm, tmp_path, host_site):
    fleet = Fleet(sandbox, local_slurm, tmp_path)
    archive = unpack(healer_files(sandbox.inventory.read_text()), tmp_path / "healer")
    fleet.drain("node1", "gpufleet replace")
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    # The gate's local probe stands in for the newcomer (its own node venv and bundle): it runs the
    # health entry point in a fresh interpreter of this checkout, not from the healer's archive.
    env = {**sandbox.env, **fleet.harness.env, "PATH": f"{healthy}:{os.environ['PATH']}",
           "GPUFLEET_INSTANCE_TYPE": fleet.ref.group.instance_type,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    code = (f"import json, runpy\nsys.argv = ['heal', '--inventory', {str(archive / INVENTORY)!r}, '--probe', 'local',"
            f" '--sources', 'ec2', '--join-timeout', '0']\n"  # no slurmd joins for the newcomer here
            f"try:\n    runpy.run_module({ENTRY_MODULE.rpartition('.')[0]!r}, run_name='__main__')\n"
            f"except SystemExit as end:\n    code = end.code\n"
            f"print(json.dumps({{'exit': code, 'gpufleet': sys.modules['gpufleet.automation.heal'].__file__,"
            f" 'loaded': sorted(n for n in sys.modules if n.split('.')[0] in {list(ABSENT)!r}),"
            f" 'caps': [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('CapEff')][0]}}))")
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("the unit's privileges are reproduced with setpriv as root")
    done = bare(archive, host_site, code, env, wrapper=UNIT_PRIVILEGES)
    assert done.returncode == 0, done.stderr
    report_line, end_line = done.stdout.strip().splitlines()[-2:]
    end, report = json.loads(end_line), json.loads(report_line)
    assert end["exit"] == 0 and Path(end["gpufleet"]).is_relative_to(archive) and end["loaded"] == [], (end, done.stderr)
    assert int(end["caps"], 16) == 0, end
    (op,) = report["operations"]
    assert (op["node"], op["action"], op["state"]) == ("node1", "replace", "DONE") and len(op["replaced_by"]) == 1, done.stderr
    assert op["instance_id"] == fleet.ids["node1"] and op["replaced_by"][0] in fleet.in_service()
    (journaled,) = heal_ops(fleet.journal)
    assert journaled.state is MoveState.DONE
    assert len(fleet.terminations(sandbox)) == 1
    assert sandbox.client.iam()["denials"] == []

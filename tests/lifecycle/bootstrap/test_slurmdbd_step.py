"""65-slurmdbd on the head node, for real in a temporary root, with MariaDB's, Slurm's and systemd's
commands faked at the PATH boundary (the local Slurm harness runs the real daemons)."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack

REPO = Path(__file__).resolve().parents[3]
FAKES = {
    "systemctl": 'echo "systemctl $*" >> "$FAKE_CALLS"',
    "mariadb": 'echo "mariadb $*" >> "$FAKE_CALLS"; case "$*" in *-e*) ;; *) cat >> "$FAKE_SQL" ;; esac',
    "sacctmgr": ('echo "sacctmgr $*" >> "$FAKE_CALLS"\n'
                 'case "$*" in *format=cluster*) cat "$FAKE_CLUSTERS" 2>/dev/null ;; esac; exit 0'),
    "mariadbd": "exit 0",
    "slurmdbd": "exit 0",
}


@pytest.fixture
def head(tmp_path: Path) -> dict[str, Path]:
    try:
        pwd.getpwnam("slurm")
    except KeyError:
        pytest.skip("no slurm user here (Debian's slurm packages create it)")
    lifecycle = tmp_path / "opt" / "gpufleet" / "lifecycle"
    for rel, text in plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml")).files.items():
        (lifecycle / rel).parent.mkdir(parents=True, exist_ok=True)
        (lifecycle / rel).write_text(text)
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, body in FAKES.items():
        (fakes / name).write_text(f"#!/bin/bash\n{body}\n")
        (fakes / name).chmod(0o755)
    (tmp_path / "root").mkdir()
    return {"lifecycle": lifecycle, "bin": fakes, "root": tmp_path / "root", "calls": tmp_path / "calls",
            "sql": tmp_path / "sql", "clusters": tmp_path / "clusters"}


def step(head: dict[str, Path], role: str = "slurm-head") -> subprocess.CompletedProcess[str]:
    script = REPO / "lifecycle" / "bootstrap" / "steps" / "65-slurmdbd.sh"
    env = {"PATH": f"{head['bin']}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "GPUFLEET_ROLE": role,
           "GPUFLEET_LIFECYCLE_DIR": str(head["lifecycle"]), "GPUFLEET_ROOT": str(head["root"]),
           "GPUFLEET_STEP": "65-slurmdbd", "GPUFLEET_RETRY_DELAY_S": "0", "FAKE_CALLS": str(head["calls"]),
           "FAKE_SQL": str(head["sql"]), "FAKE_CLUSTERS": str(head["clusters"])}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_the_head_gets_mariadb_then_slurmdbd_then_its_cluster_registered(head) -> None:
    done = step(head)
    assert done.returncode == 0, done.stderr
    conf = head["root"] / "etc/slurm/slurmdbd.conf"
    assert conf.read_text() == (head["lifecycle"] / "slurm/slurmdbd.conf").read_text()
    assert conf.stat().st_mode & 0o777 == 0o600 and pwd.getpwuid(conf.stat().st_uid).pw_name == "slurm"
    assert "innodb_lock_wait_timeout=900" in (head["root"] / "etc/mysql/mariadb.conf.d/60-gpufleet-slurmdbd.cnf").read_text()
    sql = head["sql"].read_text()
    assert "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;" in sql
    assert "GRANT ALL ON `slurm_acct_db`.* TO 'slurm'@'localhost';" in sql
    calls = head["calls"].read_text().splitlines()
    order = [calls.index(c) for c in ("systemctl enable --now mariadb.service", "systemctl enable --now slurmdbd.service",
                                      "sacctmgr -i add cluster training")]
    assert order == sorted(order)
    assert "slurmdbd started; cluster training registered" in done.stderr


def test_a_registered_cluster_is_not_added_again_and_other_roles_skip(head) -> None:
    head["clusters"].write_text("training\n")
    assert step(head).returncode == 0
    assert not any("add cluster" in c for c in head["calls"].read_text().splitlines())
    head["calls"].unlink()
    skipped = step(head, role="slurm-compute")
    assert skipped.returncode == 0 and "runs no slurmdbd: skipped" in skipped.stderr
    assert not head["calls"].exists()


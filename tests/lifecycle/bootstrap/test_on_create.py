"""on_create for real, in a temporary root, with external commands faked at the PATH boundary.

The fakes (fi_info, mount, mountpoint, systemctl, aws, curl, the health gate's python) record
their arguments and answer like the real ones; everything else (bash, install, awk, flock, the
step scripts, the bundle layout) is real.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.bootstrap.user_data import NodeParams, NodeRole, render_node_env
from gpufleet.lifecycle.layout import lifecycle_dir

REPO = Path(__file__).resolve().parents[3]
FI_INFO_P5 = REPO / "tests" / "fixtures" / "health" / "fi_info_efa_p5_32.txt"
MUNGE_KEY = bytes(range(256)) * 4
STEPS = ["05-slurm-packages", "10-efa-check", "15-imds-guard", "20-nccl-env", "30-fsx-mount", "40-exporters", "50-munge",
         "60-health-gate", "65-slurmdbd", "70-join", "75-healer"]
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[[\w-]+\] ")

def netfilter(tool: str) -> str:
    """A fake iptables/ip6tables keeping its OUTPUT rules in a file: -C succeeds only for a rule
    inserted before, as the real one does."""
    return (f'echo "{tool} $*" >> "$FAKE_CALLS"; rules="$FAKE_CALLS.{tool}"\n'
            'case "$2" in -C) shift 3; grep -qxF -- "$*" "$rules" 2>/dev/null ;; '
            '-I) shift 4; echo "$*" >> "$rules" ;; *) exit 2 ;; esac')


FAKES = {
    # fi_info answers with a recorded p5.48xlarge listing (32 EFA devices).
    "fi_info": f'echo "fi_info $*" >> "$FAKE_CALLS"; cat {FI_INFO_P5}',
    # mount fails the first time (Lustre not ready yet), then succeeds.
    "mount": 'echo "mount $*" >> "$FAKE_CALLS"; n=$(grep -c "^mount " "$FAKE_CALLS"); [ "$n" -ge 2 ]',
    "mountpoint": 'echo "mountpoint $*" >> "$FAKE_CALLS"; exit 1',
    "systemctl": 'echo "systemctl $*" >> "$FAKE_CALLS"',
    "aws": ('echo "aws $*" >> "$FAKE_CALLS"\n'
            'case "$*" in *get-secret-value*) cat "$FAKE_SECRET" ;; esac'),
    "curl": ('echo "curl $*" >> "$FAKE_CALLS"\n'
             'case "$*" in *api/token*) echo token-1 ;; *instance-id*) echo i-0123456789abcdef0 ;; esac'),
    "fake-python": 'echo "python $*" >> "$FAKE_CALLS"; exit "${FAKE_HEALTH_RC:-0}"',
    # The image's Slurm (Ubuntu 24.04 packages Slurm 23.11).
    # No reservation exists yet; everything else is recorded.
    "scontrol": 'echo "scontrol $*" >> "$FAKE_CALLS"; case "$*" in *"show reservation"*) exit 1 ;; esac',
    "slurmd": ('case "$1" in -C) echo "NodeName=ip-10-0-0-5 CPUs=192 Boards=1 SocketsPerBoard=2 CoresPerSocket=48 '
               'ThreadsPerCore=2 RealMemory=2063000"; echo "UpTime=0-00:05:00" ;; *) echo "slurm 23.11.4" ;; esac'),
    "munged": 'exit 0',
    "iptables": netfilter("iptables"),
    "ip6tables": netfilter("ip6tables"),
}


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    """The bundle the stack uploads, where the user data puts it; a root to configure, fake commands
    and the node.env."""
    bundle = Path(f"{tmp_path}{lifecycle_dir()}")
    plan = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))
    spec = plan.cluster
    for rel, text in plan.files.items():
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text(text)
        (bundle / rel).chmod(0o644)  # as aws s3 cp leaves them
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "secret").write_text(base64.b64encode(MUNGE_KEY).decode())
    root = tmp_path / "root"
    root.mkdir()
    params = NodeParams(
        role=NodeRole.SLURM_COMPUTE, region="us-east-1", bundle_version="test", node_group="train-h100",
        instance_type="p5.48xlarge", num_gpus=8, efa_interfaces=32, fsx_dns_name="fs-1.fsx.us-east-1.amazonaws.com",
        fsx_mount_name="abcdef12", fsx_mount_path="/fsx", slurm_node_conf=spec.partition("train-h100").dynamic_node_conf(),
        munge_secret_id="training-munge-key")
    env_file = tmp_path / "node.env"
    env_file.write_text(render_node_env(params.to_env() | {
        "GPUFLEET_ROOT": str(root), "GPUFLEET_RETRY_DELAY_S": "0", "GPUFLEET_PYTHON": str(bin_dir / "fake-python")}))
    return {"bundle": bundle, "root": root, "bin": bin_dir, "env": env_file, "calls": tmp_path / "calls",
            "secret": tmp_path / "secret"}


def on_create(node: dict[str, Path], **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{node['bin']}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return subprocess.run(
        ["bash", str(node["bundle"] / "bootstrap" / "on_create.sh"), str(node["env"])],
        env={"PATH": path, "FAKE_CALLS": str(node["calls"]), "FAKE_SECRET": str(node["secret"]), "HOME": "/tmp", **env},
        capture_output=True, text=True, timeout=60)


def calls(node: dict[str, Path]) -> list[str]:
    return node["calls"].read_text().splitlines() if node["calls"].exists() else []


def test_on_create_configures_and_joins_a_slurm_compute_node(node: dict[str, Path]) -> None:
    done = on_create(node)
    assert done.returncode == 0, done.stderr
    root = node["root"]
    state = root / "var/lib/gpufleet/bootstrap"
    assert sorted(p.name for p in state.glob("*.done")) == [f"{s}.done" for s in STEPS]
    assert (state / "done").exists()
    # The bundle arrives without file modes; slurmd executes these hooks itself.
    for hook in ("slurm/prolog.sh", "slurm/epilog.sh", "health/slurm_healthcheck.sh"):
        assert (node["bundle"] / hook).stat().st_mode & 0o111 == 0o111, hook

    assert "export FI_EFA_USE_DEVICE_RDMA=1" in (root / "etc/profile.d/gpufleet-nccl.sh").read_text()
    assert "FI_PROVIDER=efa" in (root / "etc/gpufleet/nccl.env").read_text()
    assert (root / "etc/fstab").read_text() == (
        "fs-1.fsx.us-east-1.amazonaws.com@tcp:/abcdef12 /fsx lustre "
        "relatime,flock,_netdev,x-systemd.automount,x-systemd.requires=network-online.target 0 0\n")
    assert (root / "etc/munge/munge.key").read_bytes() == MUNGE_KEY
    assert (root / "etc/munge/munge.key").stat().st_mode & 0o777 == 0o400
    assert (root / "etc/slurm/slurm.conf").read_text() == (node["bundle"] / "slurm/slurm.conf").read_text()
    assert "File=/dev/nvidia[0-7]" in (root / "etc/slurm/gres.conf").read_text()
    dropin = (root / "etc/systemd/system/slurmd.service.d/gpufleet.conf").read_text()
    assert ('ExecStart=/usr/sbin/slurmd -D -Z -N train-h100-i-0123456789abcdef0 '
            '--conf "Feature=train-h100 Gres=gpu:h100:8"') in dropin
    assert "--collector.infiniband" in (root / "etc/systemd/system/gpufleet-node-exporter.service").read_text()
    assert (root / "etc/systemd/system/gpufleet-dcgm-exporter.service").exists()

    made = calls(node)
    assert [c for c in made if c.startswith("mount ")] == [
        f"mount -t lustre -o relatime,flock fs-1.fsx.us-east-1.amazonaws.com@tcp:/abcdef12 {root}/fsx"] * 2
    assert any(c.startswith("python -m gpufleet.lifecycle.health --tiers quick") for c in made)
    # The health gate runs before the node joins.
    gate = next(i for i, c in enumerate(made) if c.startswith("python "))
    join = made.index("systemctl enable --now slurmd.service")
    assert gate < join
    # It registers held: its record and its hold reservation exist before slurmd first starts.
    node_name = "train-h100-i-0123456789abcdef0"
    create = made.index(f"scontrol create NodeName={node_name} CPUs=192 Boards=1 SocketsPerBoard=2 CoresPerSocket=48 "
                        "ThreadsPerCore=2 RealMemory=2063000 Feature=train-h100 Gres=gpu:h100:8 State=FUTURE")
    hold = made.index(f"scontrol create reservation ReservationName=gpufleet-unverified-{node_name} Nodes={node_name} "
                      "Users=root StartTime=now Duration=infinite Flags=MAINT,IGNORE_JOBS")
    assert create < hold < join
    assert f"ExecStopPost=-/usr/bin/scontrol delete reservation=gpufleet-unverified-{node_name}" in dropin
    # ... and again before every later start of slurmd (a reboot, a restart): held again.
    assert (f'ExecStartPre=/bin/bash {node["bundle"]}/slurm/hold-node.sh {node_name} '
            '"Feature=train-h100 Gres=gpu:h100:8"') in dropin.splitlines()

    log = (root / "var/log/gpufleet/bootstrap.log").read_text().splitlines()
    for step in STEPS:
        assert any(f"[on_create] start {step}" in line for line in log)
        assert any(f"[on_create] done {step} in" in line for line in log)
    assert any("attempt 1 of 5 failed: mount" in line for line in log)
    ours = [line for line in log if "[on_create]" in line or "[10-" in line or "[70-" in line]
    assert ours and all(TIMESTAMPED.match(line) for line in ours)


def test_jobs_cannot_reach_instance_credentials_from_before_munge_on(node: dict[str, Path]) -> None:
    done = on_create(node)
    assert done.returncode == 0, done.stderr
    made = calls(node)
    owner_match = "-d {} -p tcp --dport 80 -m owner ! --uid-owner 0 -j REJECT"
    assert f"iptables -w -I OUTPUT 1 {owner_match.format('169.254.169.254/32')}" in made
    assert f"ip6tables -w -I OUTPUT 1 {owner_match.format('fd00:ec2::254/128')}" in made
    # In place before the munge key is fetched and before slurmd can start a job; kept at every boot.
    first_rule = next(i for i, c in enumerate(made) if c.startswith("iptables -w -I"))
    assert first_rule < next(i for i, c in enumerate(made) if "get-secret-value" in c)
    assert first_rule < made.index("systemctl enable --now slurmd.service")
    assert "systemctl enable gpufleet-imds-guard.service" in made
    unit = (node["root"] / "etc/systemd/system/gpufleet-imds-guard.service").read_text()
    assert "Before=network.target munge.service slurmd.service" in unit and "WantedBy=multi-user.target" in unit
    # At the next boot the unit runs the guard again: it adds nothing twice.
    guard = node["root"] / "usr/local/sbin/gpufleet-imds-guard"
    again = subprocess.run([str(guard)], env={"PATH": f"{node['bin']}:/usr/bin:/bin", "FAKE_CALLS": str(node["calls"])},
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 0, again.stderr
    assert len([c for c in calls(node) if c.startswith(("iptables -w -I", "ip6tables -w -I"))]) == 2
    # The munge key: readable by its owner alone (munge, where the user exists).
    assert (node["root"] / "etc/munge/munge.key").stat().st_mode & 0o777 == 0o400


def test_on_create_twice_changes_nothing(node: dict[str, Path]) -> None:
    assert on_create(node).returncode == 0
    first_calls = len(calls(node))
    snapshot = {p: p.read_bytes() for p in node["root"].rglob("*") if p.is_file() and "bootstrap.log" not in p.name}

    again = on_create(node)
    assert again.returncode == 0
    assert "already bootstrapped" in again.stderr
    assert len(calls(node)) == first_calls  # no command ran
    assert {p: p.read_bytes() for p in snapshot} == snapshot

    # Steps re-run after the markers are lost still leave one fstab entry.
    for marker in (node["root"] / "var/lib/gpufleet/bootstrap").iterdir():
        marker.unlink()
    assert on_create(node).returncode == 0
    assert len((node["root"] / "etc/fstab").read_text().splitlines()) == 1


def test_failed_health_gate_keeps_the_node_out_and_resumes_where_it_stopped(node: dict[str, Path]) -> None:
    failed = on_create(node, FAKE_HEALTH_RC="1")
    assert failed.returncode == 1
    assert "FAILED 60-health-gate" in failed.stderr
    state = node["root"] / "var/lib/gpufleet/bootstrap"
    assert not (state / "done").exists() and not (state / "60-health-gate.done").exists()
    assert "systemctl enable --now slurmd.service" not in calls(node)

    node["calls"].unlink()
    fixed = on_create(node)
    assert fixed.returncode == 0
    assert "skip 50-munge: done before" in fixed.stderr
    assert not any(c.startswith(("fi_info", "mount ")) for c in calls(node))  # earlier steps not redone
    assert "systemctl enable --now slurmd.service" in calls(node)


def test_missing_efa_devices_fail_the_bootstrap(node: dict[str, Path]) -> None:
    (node["bin"] / "fi_info").write_text("#!/bin/bash\necho 'fi_getinfo: -61 (No data available)'\nexit 61\n")
    done = on_create(node, GPUFLEET_RETRY_ATTEMPTS="2")
    assert done.returncode != 0
    assert "FAILED 10-efa-check" in done.stderr
    log = (node["root"] / "var/log/gpufleet/bootstrap.log").read_text()
    assert "0 of 32 EFA devices" in log and "gave up after 2 attempts" in log


def test_an_image_without_slurm_fails_before_anything_is_configured(node: dict[str, Path]) -> None:
    (node["bin"] / "slurmd").write_text('#!/bin/bash\necho "slurm-wlm 21.08.5"\n')
    done = on_create(node)
    assert done.returncode == 1 and "FAILED 05-slurm-packages" in done.stderr
    assert "dynamic nodes need Slurm 22.05 or later" in (node["root"] / "var/log/gpufleet/bootstrap.log").read_text()
    assert not (node["root"] / "etc").exists()


def test_unreadable_node_env_exits_2(node: dict[str, Path]) -> None:
    node["env"].unlink()
    done = on_create(node)
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_a_bundle_outside_the_package_layout_exits_2(node: dict[str, Path], tmp_path: Path) -> None:
    # The old layout, <install dir>/lifecycle: python -m gpufleet.lifecycle... could not import it.
    old = tmp_path / "old" / "lifecycle"
    shutil.copytree(node["bundle"], old)
    done = subprocess.run(["bash", str(old / "bootstrap" / "on_create.sh"), str(node["env"])],
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "must be installed as <dir>/gpufleet/lifecycle" in done.stderr
    assert not (node["root"] / "var").exists()  # nothing done

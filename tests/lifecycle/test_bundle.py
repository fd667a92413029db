"""The node bundle runs on its own: built by the stack's own function into an empty directory, every
node entry point works with an interpreter that sees only the bundle and the node's packages.

Entry points: the health CLI, the Slurm health-check hook (slurm_healthcheck.sh -> slurm_hook), the
boot health-gate step (60-health-gate.sh), the training runtime and the reference job. Devices are
faked at the node boundary (recorded nvidia-smi / fi_info / dmesg outputs); ``scontrol`` is a fake
that accepts only what the real one accepts for the calls the hook makes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.bootstrap.bundle import LIFECYCLE_DIR, NODE_REQUIREMENTS, package_files
from gpufleet.lifecycle.health.results import NodeReport, Status
from tests.conftest import REPO
from tests.lifecycle.health.fixture_runner import fake_tools
from tests.lifecycle.node_image import (
    Node,
    install_bundle,
    is_inside,
    node_requirements,
)

PLAN = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))
DEVICES = {"healthy": "nvidia_smi_q_h100x8_healthy.xml", "dbe": "nvidia_smi_q_h100x8_dbe.xml"}
NODE_SETTINGS = {"GPUFLEET_INSTANCE_TYPE": "p5.48xlarge", "GPUFLEET_NO_IMDS": "1", "GPUFLEET_HEALTH_DISK_PATHS": "/tmp"}

# scontrol as slurmd's host has it: `show node <name>` and `update nodename=<name> state=...`.
FAKE_SCONTROL = r"""#!/bin/bash
echo "scontrol $*" >> "{calls}"
state=$(cat "{state}")
case "$1 $2" in
    "show node")
        if [ "$3" != node3 ]; then echo "Node $3 not found" >&2; exit 1; fi
        echo "NodeName=node3 Arch=x86_64 CoresPerSocket=1"
        echo "   State=$state ThreadsPerCore=1"
        echo "   Reason=$(cat "{reason}")"
        ;;
    "update nodename=node3")
        case "$3" in
            state=drain) [[ "$4" == reason=?* ]] || {{ echo "You must specify a reason when DRAINING a node" >&2; exit 1; }}
                         echo "IDLE+DRAIN" > "{state}"; echo "${{4#reason=}}" > "{reason}" ;;
            state=resume) echo IDLE > "{state}"; : > "{reason}" ;;
            *) echo "Invalid input: $3" >&2; exit 1 ;;
        esac ;;
    *) echo "invalid entity: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def node(node_python: Path, tmp_path: Path) -> Node:
    install_dir = tmp_path / "opt" / "gpufleet"
    install_dir.mkdir(parents=True)
    install_bundle(PLAN.files, install_dir)  # exactly what the stack uploads, nothing else
    home = tmp_path / "home"
    home.mkdir()
    return Node(python=node_python, install_dir=install_dir, home=home)


def devices(tmp_path: Path, kind: str) -> Path:
    return fake_tools(tmp_path / f"tools-{kind}", DEVICES[kind])


def test_the_interpreter_sees_the_bundle_and_the_node_packages_only(node: Node) -> None:
    probe = ("import importlib.util as u, json, gpufleet.lifecycle as l\n"
             "names = ['gpufleet.infra', 'gpufleet.automation', 'boto3', 'pulumi', 'typer', 'yaml', 'torch', 'numpy']\n"
             "print(json.dumps({'lifecycle': l.__file__, **{n: u.find_spec(n) is not None for n in names}}))")
    done = node.run_python("-c", probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert is_inside(seen.pop("lifecycle"), node.install_dir)
    assert seen == {"gpufleet.infra": False, "gpufleet.automation": False, "boto3": False, "pulumi": False,
                    "typer": False, "yaml": False, "torch": True, "numpy": True}


@pytest.mark.torch
def test_every_bundle_module_imports_there(node: Node) -> None:
    """A lifecycle module importing gpufleet.infra (or any package the node lacks) fails here."""
    walk = ("import importlib, pkgutil, gpufleet.lifecycle as l\n"
            "for m in pkgutil.walk_packages(l.__path__, 'gpufleet.lifecycle.'):\n"
            "    importlib.import_module(m.name); print(m.name)")
    done = node.run_python("-c", walk)
    assert done.returncode == 0, done.stderr
    modules = {f"gpufleet.lifecycle.{p.removesuffix('.py').replace('/', '.')}".removesuffix(".__init__")
               for p in PLAN.files if p.endswith(".py") and p != "__init__.py"}
    assert set(done.stdout.split()) == modules
    assert {"gpufleet.lifecycle.runtime.checkpoint", "gpufleet.lifecycle.jobs.gpt_reference",
            "gpufleet.lifecycle.health.slurm_hook", "gpufleet.lifecycle.instance_types"} <= modules


@pytest.mark.parametrize(("kind", "returncode", "status"), [("healthy", 0, Status.PASS), ("dbe", 1, Status.FAIL)])
def test_health_cli_reads_the_bundles_catalog(node: Node, tmp_path: Path, kind: str, returncode: int,
                                              status: Status) -> None:
    done = node.run_python("-m", "gpufleet.lifecycle.health", "--tiers", "quick", "--json", "--node", "p5-a",
                           path=f"{devices(tmp_path, kind)}:/usr/bin:/bin", **NODE_SETTINGS)
    assert done.returncode == returncode, done.stderr
    report = NodeReport.from_dict(json.loads(done.stdout))
    assert (report.node, report.instance_type, report.gpu_model, report.status) == ("p5-a", "p5.48xlarge", "H100", status)
    # The expectations come from lifecycle/data/instance_types.csv inside the bundle.
    expected = {r.check: r.expected for r in report.results if not r.device}
    assert expected["gpu_count"] == 8 and expected["efa"] == 32
    if status is Status.FAIL:
        assert [f.check for f in report.failures] == ["ecc"]


def install_fake_scontrol(tools: Path, tmp_path: Path) -> Path:
    calls, state, reason = tmp_path / "scontrol-calls", tmp_path / "node-state", tmp_path / "node-reason"
    state.write_text("IDLE\n")
    reason.write_text("")
    scontrol = tools / "scontrol"
    scontrol.write_text(FAKE_SCONTROL.format(calls=calls, state=state, reason=reason))
    scontrol.chmod(0o755)
    return calls


def test_slurm_hook_drains_a_failing_node_and_resumes_it_from_the_bundle(node: Node, tmp_path: Path) -> None:
    tools = {kind: devices(tmp_path, kind) for kind in DEVICES}
    calls = install_fake_scontrol(tools["dbe"], tmp_path)
    (tools["healthy"] / "scontrol").symlink_to(tools["dbe"] / "scontrol")
    textfile = tmp_path / "textfile" / "gpufleet_health_quick.prom"
    health_env = node.lifecycle / "health" / "health.env"  # the hook reads health.env beside itself
    settings = "".join(f"{k}={v}\n" for k, v in NODE_SETTINGS.items())

    def hook(kind: str):
        health_env.write_text(f"GPUFLEET_PYTHON={node.python}\n{settings}GPUFLEET_HEALTH_TEXTFILE={textfile}\n"
                              f"PATH={tools[kind]}:$PATH\n")
        # slurmd starts the HealthCheckProgram with an empty environment but SLURMD_NODENAME.
        return node.run_script("health/slurm_healthcheck.sh", env={"SLURMD_NODENAME": "node3"})

    failed = hook("dbe")
    assert failed.returncode == 1, failed.stderr
    assert "drained node3: gpufleet: ecc: GPU 00000000:86:00.0" in failed.stdout
    drain = [c for c in calls.read_text().splitlines() if "state=drain" in c]
    assert len(drain) == 1 and drain[0].startswith("scontrol update nodename=node3 state=drain reason=gpufleet: ecc:")
    assert 'gpufleet_health_node_status{tier="quick"} 2' in textfile.read_text()

    healed = hook("healthy")
    assert healed.returncode == 0, healed.stderr
    assert "resumed node3: every check passes" in healed.stdout
    assert calls.read_text().splitlines()[-1] == "scontrol update nodename=node3 state=resume"


@pytest.mark.parametrize(("kind", "returncode", "verdict"), [("healthy", 0, "health gate passed"),
                                                            ("dbe", 1, "health gate FAILED (exit 1)")])
def test_boot_health_gate_step_runs_the_bundle(node: Node, tmp_path: Path, kind: str, returncode: int,
                                               verdict: str) -> None:
    root = tmp_path / "root"
    env = node.env(f"{devices(tmp_path, kind)}:/usr/bin:/bin", GPUFLEET_ROOT=str(root), GPUFLEET_ROLE="slurm-compute",
                   GPUFLEET_NUM_GPUS="8", GPUFLEET_PYTHON=str(node.python), GPUFLEET_STEP="60-health-gate",
                   **NODE_SETTINGS)
    done = node.run_script("bootstrap/steps/60-health-gate.sh", env=env)
    assert done.returncode == returncode, done.stderr
    assert verdict in done.stderr
    health_env = (root / "etc/gpufleet/health.env").read_text()
    assert f"GPUFLEET_PYTHON={node.python}\n" in health_env and "GPUFLEET_INSTANCE_TYPE=p5.48xlarge\n" in health_env
    metrics = (root / "var/lib/node_exporter/textfile/gpufleet_health_quick.prom").read_text()
    assert f'gpufleet_health_node_status{{tier="quick"}} {returncode * 2}' in metrics


@pytest.mark.torch
def test_reference_job_trains_and_checkpoints_from_the_bundle(node: Node, tmp_path: Path) -> None:
    ckpt, final = tmp_path / "ckpt", tmp_path / "final.pt"
    done = node.run_python("-m", "gpufleet.lifecycle.jobs.gpt_reference", "--steps", "2", "--ckpt-every", "1",
                           "--ckpt-dir", str(ckpt), "--dim", "16", "--layers", "1", "--seq-len", "8",
                           "--batch-size", "2", "--dump-final", str(final), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert final.stat().st_size > 0
    assert any((p / ".metadata").is_file() for p in ckpt.rglob("*") if p.is_dir()), sorted(ckpt.rglob("*"))


def test_node_requirements_are_the_torch_extra() -> None:
    """One list of the node's packages: the bundle's, which the install extra repeats."""
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    assert [str(r) for r in node_requirements()] == extra
    assert (LIFECYCLE_DIR / NODE_REQUIREMENTS).read_text() == PLAN.files[NODE_REQUIREMENTS]


def test_an_installed_gpufleet_carries_the_whole_bundle(tmp_path: Path) -> None:
    """The stack reads the bundle from the installed package: the wheel must hold every file of it."""
    source = tmp_path / "src"
    for part in ("infra", "automation", "lifecycle"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("gpufleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = {p for p in package_files() if f"gpufleet/lifecycle/{p}" not in names}
    assert missing == set()
    assert "gpufleet/infra/data/instance_prices.csv" in names and "gpufleet/infra/data/service_prices.csv" in names

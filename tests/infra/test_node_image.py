"""The node images: the Image Builder component documents run exactly the scripts of
infra/image_steps/, their shell passes shellcheck, and the install steps run on this Debian host in
a scratch prefix, so a broken step fails here rather than in an image build or at a node's boot.

What a step on Debian proves, and what it cannot:
- slurm-munge: the pinned names and versions resolve in the real apt index (``apt-get
  --simulate``; a pin that does not exist fails), Debian's own .debs unpack into the prefix, and the
  unpacked slurmd reports a version with dynamic nodes. The image pins Ubuntu 24.04's versions,
  which this host's index does not carry; the test passes Debian's. apt-get install itself is not run.
- release-binary (node_exporter; prometheus on the Slurm image): download over a URL (file:// here), checksum (pinned digest or the release's sums
  file), unpack and install; a corrupt download fails. The binary is a stand-in.
- node-venv: a venv from the requirements, from a wheelhouse only, every pin checked after;
  a pin the wheelhouse cannot satisfy fails. torch's CUDA wheel is not on this host: the
  wheelhouse holds a small package instead.
- dcgm: shellcheck only (NVIDIA's repository is not configured here).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from gpufleet.infra.node_image_plan import STEPS_DIR, ImageKind, image_plans, node_requirements_text

APT_ARCHIVES = Path("/var/cache/apt/archives")
PLANS = image_plans()


def run_step(script: str, tmp_path: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **env}
    return subprocess.run(["bash", str(STEPS_DIR / script)], capture_output=True, text=True, env=full_env,
                          cwd=tmp_path, timeout=timeout)


@pytest.mark.parametrize("kind", list(ImageKind))
def test_component_documents_run_the_step_scripts_and_their_shell_passes_shellcheck(kind, tmp_path):
    plan = PLANS[kind]
    assert [s.script for s in plan.steps][-1] == "node-venv.sh"
    assert ("slurm-munge.sh" in [s.script for s in plan.steps]) == (kind is ImageKind.SLURM)
    # The Slurm head's collector runs the image's prometheus (70-join.sh: GPUFLEET_PROMETHEUS default).
    assert ("prometheus" in [s.pins.get("GPUFLEET_BINARY") for s in plan.steps]) == (kind is ImageKind.SLURM)
    assert len({s.name for s in plan.steps}) == len(plan.steps)
    for step in plan.steps:
        document = yaml.safe_load(plan.component_document(step))
        [phase] = document["phases"]
        [action] = phase["steps"]
        assert phase["name"] == "build" and action["action"] == "ExecuteBash", step.name
        [command] = action["inputs"]["commands"]
        # The document runs the very file the tests run: pins first, then the script unchanged.
        assert command.endswith((STEPS_DIR / step.script).read_text()), step.name
        for name in step.pins:
            assert f"export {name}=" in command, (step.name, name)
        extracted = tmp_path / f"{kind.value}-{step.name}.sh"
        extracted.write_text(command)
        checked = subprocess.run(["shellcheck", "-s", "bash", str(extracted)], capture_output=True, text=True,
                                 timeout=120)
        assert checked.returncode == 0, f"{kind.value}/{step.name}:\n{checked.stdout}"


def test_the_venv_step_installs_the_node_requirements_and_the_version_follows_them():
    for plan in PLANS.values():
        [venv] = [s for s in plan.steps if s.script == "node-venv.sh"]
        assert venv.pins["GPUFLEET_NODE_REQUIREMENTS"] == node_requirements_text()
    assert PLANS[ImageKind.EKS].version != PLANS[ImageKind.SLURM].version


def debian_version(package: str) -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                          timeout=30)
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.fixture
def debian_slurm() -> dict[str, str]:
    versions = {"slurm": debian_version("slurmd"), "munge": debian_version("munge")}
    if not all(versions.values()) or not list(APT_ARCHIVES.glob(f"slurmd_{versions['slurm']}_*.deb")):
        pytest.skip("needs Debian's slurmd and munge packages and their .debs in /var/cache/apt/archives")
    return versions


def test_slurm_munge_step_resolves_its_pins_and_unpacks_a_slurm_with_dynamic_nodes(debian_slurm, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    done = run_step("slurm-munge.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(root), GPUFLEET_IMAGE_DEBS=str(APT_ARCHIVES),
                    GPUFLEET_SLURM_VERSION=debian_slurm["slurm"], GPUFLEET_MUNGE_VERSION=debian_slurm["munge"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "usr/sbin/munged").is_file()
    assert any((root / "usr/sbin" / name).is_file() for name in ("slurmd", "slurmd-wlm"))
    assert f" {debian_slurm['slurm'].split('-')[0]}, munge {debian_slurm['munge']}" in done.stdout, done.stdout


def test_slurm_munge_step_fails_on_a_pin_the_archive_lacks(debian_slurm, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    done = run_step("slurm-munge.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(root), GPUFLEET_IMAGE_DEBS=str(APT_ARCHIVES),
                    GPUFLEET_SLURM_VERSION="22.05.99-1", GPUFLEET_MUNGE_VERSION=debian_slurm["munge"])
    assert done.returncode != 0
    assert "22.05.99-1" in done.stderr and "not found" in done.stderr, done.stderr
    assert not (root / "usr").exists(), "nothing unpacked when a pin does not resolve"


def release_tarball(tmp_path: Path, version: str = "1.9.1") -> Path:
    """A release laid out as node_exporter's: <name>/node_exporter inside <name>.tar.gz."""
    name = f"node_exporter-{version}.linux-amd64"
    stage = tmp_path / "release" / name
    stage.mkdir(parents=True)
    binary = stage / "node_exporter"
    binary.write_text(f'#!/bin/sh\necho "node_exporter, version {version} (stand-in)"\n')
    binary.chmod(0o755)
    tarball = tmp_path / "release" / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(stage, arcname=name)
    return tarball


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned-digest", "release-sums"])
def test_exporters_step_checks_the_download_and_installs_node_exporter(tmp_path, pinned):
    tarball = release_tarball(tmp_path)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    sums = tmp_path / "release" / "sha256sums.txt"
    sums.write_text(f"{'0' * 64}  node_exporter-1.9.1.darwin-amd64.tar.gz\n{digest}  {tarball.name}\n")
    check = {"GPUFLEET_BINARY_SHA256": digest} if pinned else {"GPUFLEET_BINARY_SUMS_URL": sums.as_uri()}
    root = tmp_path / "root"
    done = run_step("release-binary.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(root), GPUFLEET_BINARY="node_exporter",
                    GPUFLEET_BINARY_URL=tarball.as_uri(), **check)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node_exporter, version 1.9.1" in done.stdout
    assert (root / "usr/local/bin/node_exporter").stat().st_mode & 0o777 == 0o755


def test_exporters_step_refuses_a_download_that_does_not_match(tmp_path):
    tarball = release_tarball(tmp_path)
    root = tmp_path / "root"
    done = run_step("release-binary.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(root), GPUFLEET_BINARY="node_exporter",
                    GPUFLEET_BINARY_URL=tarball.as_uri(), GPUFLEET_BINARY_SHA256="0" * 64)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr
    assert not (root / "usr/local/bin/node_exporter").exists()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """One small pure-Python wheel, built offline from a source tree made here."""
    base = tmp_path_factory.mktemp("wheelhouse")
    source = base / "src"
    (source / "gpufleet_probe").mkdir(parents=True)
    (source / "gpufleet_probe" / "__init__.py").write_text('ANSWER = 42\n')
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "gpufleet-probe"\nversion = "1.0"\n')
    wheels = base / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(source)
    return wheels


def base_python() -> str:
    return getattr(sys, "_base_executable", sys.executable)


def test_node_venv_step_builds_the_venv_from_the_wheelhouse_only(wheelhouse, tmp_path):
    root = tmp_path / "root"
    done = run_step("node-venv.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(root), GPUFLEET_PYTHON_BIN=base_python(),
                    GPUFLEET_WHEELHOUSE=str(wheelhouse), GPUFLEET_NODE_REQUIREMENTS="# node\ngpufleet-probe==1.0\n")
    assert done.returncode == 0, done.stdout + done.stderr
    python = root / "opt/gpufleet/venv/bin/python"
    probe = subprocess.run([str(python), "-c", "import gpufleet_probe; print(gpufleet_probe.ANSWER)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.stdout.strip() == "42", probe.stderr


def test_node_venv_step_fails_on_a_pin_the_wheelhouse_cannot_satisfy(wheelhouse, tmp_path):
    done = run_step("node-venv.sh", tmp_path, GPUFLEET_IMAGE_ROOT=str(tmp_path / "root"),
                    GPUFLEET_PYTHON_BIN=base_python(), GPUFLEET_WHEELHOUSE=str(wheelhouse),
                    GPUFLEET_NODE_REQUIREMENTS="gpufleet-probe==2.0\n")
    assert done.returncode != 0
    assert "gpufleet-probe==2.0" in done.stderr, done.stderr


def test_the_platform_bakes_shares_and_publishes_each_image_and_consumers_launch_it(rendered_fleet):
    platform = rendered_fleet["platform"]
    consumers = {name: rendered_fleet[name] for name in ("training", "inference")}
    images = {i["kind"]: i for i in platform.exports["nodeImages"]}
    assert set(images) == {"eks", "slurm"}
    for distribution in platform.of_type("aws:imagebuilder/distributionConfiguration:DistributionConfiguration"):
        [target] = distribution.inputs["distributions"]
        shared = target["amiDistributionConfiguration"]["launchPermission"]["userIds"]
        assert sorted(shared) == sorted(s.spec.account_id for s in consumers.values()), distribution.urn
    recipes = {r.inputs["name"]: r for r in platform.of_type("aws:imagebuilder/imageRecipe:ImageRecipe")}
    for kind, image in images.items():
        plan = PLANS[ImageKind(kind)]
        assert image["version"] == plan.version
        recipe = recipes[f"gpufleet-{kind}-{plan.version}"]
        assert recipe.inputs["parentImage"] == plan.parent_image
        assert len(recipe.inputs["components"]) == len(plan.steps), recipe.urn
    parameters = {p.inputs["name"]: p.inputs["insecureValue"] for p in platform.of_type("aws:ssm/parameter:Parameter")}
    assert {i["parameterName"]: i["amiId"] for i in images.values()}.items() <= parameters.items()
    for name, stack in consumers.items():
        kind = stack.spec.cluster_kind.value
        [copy] = [p for p in stack.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"] == images[kind]["parameterName"]]
        assert copy.inputs["insecureValue"] == images[kind]["amiId"] and copy.inputs["dataType"] == "aws:ec2:image"
        templates = [t for t in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")
                     if "gpufleet:compute:EfaNodeTemplate" in t.urn]
        assert templates and all(t.inputs["imageId"] == images[kind]["amiId"] for t in templates), name
        for head in stack.of_type("aws:ec2/instance:Instance"):
            assert head.inputs["ami"] == images[kind]["amiId"], head.urn

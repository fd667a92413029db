"""User data and node.env rendering (golden files), and the bundle's contents and version."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import spec_from_stack
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.bootstrap.bundle import (
    LIFECYCLE_DIR,
    bundle_version,
    package_files,
    slurm_files,
)
from gpufleet.lifecycle.bootstrap.user_data import (
    NodeParams,
    NodeRole,
    UserDataParams,
    render_node_env,
    render_user_data,
)
from gpufleet.lifecycle.slurm.conf import SlurmSite
from tests.golden import check_golden

REPO = Path(__file__).resolve().parents[3]




def compute_params() -> NodeParams:
    spec = spec_from_stack(load_stack(REPO / "stacks" / "Pulumi.training.yaml"),
                           SlurmSite(controller_hostname="slurm-head", controller_addr="10.20.0.10"))
    part = spec.partition("train-h100")
    return NodeParams(
        role=NodeRole.SLURM_COMPUTE, region="us-east-1", bundle_version="0123456789ab", node_group="train-h100",
        instance_type="p5.48xlarge", num_gpus=8, efa_interfaces=32,
        fsx_dns_name="fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com", fsx_mount_name="abcdef12",
        fsx_mount_path="/fsx", slurm_node_conf=part.dynamic_node_conf(),
        munge_secret_id="arn:aws:secretsmanager:us-east-1:222222222222:secret:training-munge-key-AbCdEf",
    )


def test_compute_user_data_matches_golden() -> None:
    text = render_user_data(UserDataParams(bundle_uri="s3://training-lifecycle-bucket/lifecycle/0123456789ab/",
                                           node_env_path="nodes/train-h100.env", region="us-east-1"))
    check_golden("user_data.slurm-compute.sh", text)


def test_compute_node_env_matches_golden() -> None:
    check_golden("node.train-h100.env", render_node_env(compute_params().to_env()))


def test_user_data_and_node_env_are_valid_bash(tmp_path: Path) -> None:
    env = tmp_path / "node.env"
    env.write_text(render_node_env(compute_params().to_env()))
    out = subprocess.run(["bash", "-c", f'set -eu; . {env}; echo "$GPUFLEET_SLURM_NODE_CONF"'],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "Feature=train-h100 Gres=gpu:h100:8"
    script = tmp_path / "user_data.sh"
    script.write_text(render_user_data(UserDataParams(bundle_uri="s3://b-ucket/p/v1/", node_env_path="nodes/x.env",
                                                      region="us-east-1")))
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_node_env_quotes_hostile_values() -> None:
    text = render_node_env({"GPUFLEET_X": "a'b $(reboot)"})
    assert text.splitlines()[1] == "GPUFLEET_X='a'\"'\"'b $(reboot)'"
    with pytest.raises(ValueError, match="GPUFLEET"):
        render_node_env({"PATH": "/tmp"})


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"bundle_uri": "s3://bucket/prefix"}, "bundle_uri"),
    ({"bundle_uri": "https://bucket/prefix/"}, "bundle_uri"),
    ({"node_env_path": "../../etc/passwd"}, "node_env_path"),
    ({"fetch_attempts": 0}, "fetch_attempts"),
])
def test_user_data_params_validation_names_field(kwargs: dict, field: str) -> None:
    base = {"bundle_uri": "s3://bucket/prefix/v/", "node_env_path": "nodes/a.env", "region": "us-east-1"}
    with pytest.raises(ValueError, match=field):
        UserDataParams(**(base | kwargs))


def test_bundle_holds_scripts_and_version_follows_content() -> None:
    files = package_files()
    assert {"bootstrap/on_create.sh", "bootstrap/lib.sh", "bootstrap/steps/70-join.sh",
            "slurm/prolog.sh", "slurm/epilog.sh", "data/instance_types.csv", "node-requirements.txt"} <= set(files)
    assert not any("__pycache__" in p for p in files)
    version = bundle_version(files)
    assert len(version) == 12 and version == bundle_version(dict(files))
    changed = dict(files, **{"bootstrap/lib.sh": files["bootstrap/lib.sh"] + "\n"})
    assert bundle_version(changed) != version


def test_slurm_files_have_a_gres_conf_per_group() -> None:
    spec = spec_from_stack(load_stack(REPO / "stacks" / "Pulumi.training.yaml"),
                           SlurmSite(controller_hostname="h", controller_addr="10.20.0.10"))
    files = slurm_files(spec)
    assert set(files) == {"slurm/slurm.conf", "slurm/slurmdbd.conf", "slurm/cgroup.conf",
                          "slurm/gres/train-h100.conf", "slurm/gres/train-h200.conf"}
    no_dbd = replace(spec, site=replace(spec.site, accounting=False))
    assert "slurm/slurmdbd.conf" not in slurm_files(no_dbd)
    assert "Name=gpu Type=h200 File=/dev/nvidia[0-7]" in files["slurm/gres/train-h200.conf"]


def test_a_catalog_change_makes_a_new_bundle_version(tmp_path: Path) -> None:
    copy = tmp_path / "lifecycle"
    shutil.copytree(LIFECYCLE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert package_files(copy) == package_files()
    before = bundle_version(package_files(copy))
    catalog = copy / "data" / "instance_types.csv"
    catalog.write_text(catalog.read_text().replace("p5.48xlarge,8,H100,80,192,2048,32", "p5.48xlarge,8,H100,80,192,2048,16"))
    assert bundle_version(package_files(copy)) != before
    requirements = copy / "node-requirements.txt"
    requirements.write_text(requirements.read_text() + "pyyaml>=6\n")
    assert len({before, bundle_version(package_files(copy))}) == 2


def test_user_data_installs_the_bundle_as_the_gpufleet_lifecycle_package() -> None:
    text = render_user_data(UserDataParams(bundle_uri="s3://b-ucket/p/v1/", node_env_path="nodes/x.env",
                                           region="us-east-1", install_dir="/srv/fleet"))
    assert "lifecycle=/srv/fleet/gpufleet/lifecycle\n" in text
    assert 'exec bash "$lifecycle/bootstrap/on_create.sh"' in text
    with pytest.raises(ValueError, match="install_dir"):
        UserDataParams(bundle_uri="s3://b-ucket/p/v1/", node_env_path="nodes/x.env", region="us-east-1",
                       install_dir="opt/gpufleet")

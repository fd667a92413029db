"""The control plane's side of a Slurm cluster: the stack file -> the bundle's SlurmClusterSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import plan_slurm, spec_from_stack
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.bootstrap.bundle import bundle_files, bundle_version
from gpufleet.lifecycle.slurm.conf import SlurmClusterSpec, SlurmSite, render_slurm_conf

REPO = Path(__file__).resolve().parents[2]
AWS_SITE = SlurmSite(controller_hostname="slurm-head", controller_addr="10.20.0.10")


def training_spec() -> SlurmClusterSpec:
    return spec_from_stack(load_stack(REPO / "stacks" / "Pulumi.training.yaml"), AWS_SITE)


def test_training_spec_has_a_partition_per_node_group_with_catalog_gpus() -> None:
    spec = training_spec()
    assert [(p.name, p.gres, p.max_nodes) for p in spec.partitions] == [
        ("train-h100", "gpu:h100:8", 8), ("train-h200", "gpu:h200:8", 4)]
    assert spec.max_node_count == 12
    text = render_slurm_conf(spec)
    assert "NodeSet=train-h100-nodes Feature=train-h100" in text
    assert "PartitionName=train-h100 Nodes=train-h100-nodes Default=YES" in text
    assert "PartitionName=train-h200 Nodes=train-h200-nodes Default=NO" in text
    assert "NodeName=" not in text  # cloud nodes are dynamic


def test_dynamic_node_conf_carries_feature_and_gres() -> None:
    assert training_spec().partition("train-h200").dynamic_node_conf() == "Feature=train-h200 Gres=gpu:h200:8"


def test_non_slurm_stack_is_refused() -> None:
    stack = load_stack(REPO / "stacks" / "Pulumi.inference.yaml")
    with pytest.raises(ValueError, match="clusterKind"):
        spec_from_stack(stack, AWS_SITE)


def test_the_plan_uploads_the_bundle_with_its_data_and_hooks_at_their_node_paths() -> None:
    plan = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))
    assert plan.files == bundle_files(plan.cluster, source="stacks/Pulumi.training.yaml")
    assert plan.version == bundle_version(plan.files)
    assert {"data/instance_types.csv", "instance_types.py", "node-requirements.txt",
            "health/slurm_healthcheck.sh", "slurm/slurm.conf"} <= set(plan.files)
    conf = plan.files["slurm/slurm.conf"]
    # slurm.conf names the hooks where the user data puts the bundle.
    for hook in ("slurm/prolog.sh", "slurm/epilog.sh", "health/slurm_healthcheck.sh"):
        assert f"=/opt/gpufleet/gpufleet/lifecycle/{hook}\n" in conf
        assert hook in plan.files

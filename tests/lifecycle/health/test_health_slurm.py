"""Against a real local Slurm: the health hook drains the node whose GPUs report a double-bit ECC
error, queued work avoids it, and the hook resumes it once the node is healthy again.

The fault is injected at the device boundary: each node's health.d/<node>.env puts a directory of
fake ``nvidia-smi`` / ``fi_info`` / ``dmesg`` first on PATH, answering with recorded outputs. The hook
runs as on a node: from the bundle the stack uploads, with an interpreter holding only the node's
packages (tests/lifecycle/node_image.py).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from fixture_runner import fake_tools

from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from tests.conftest import REPO, require_binary
from tests.lifecycle.node_image import install_bundle

pytestmark = pytest.mark.slurm

HOOK = Path("slurm_healthcheck.sh")


def install_hook(tmp_path: Path, slurm_conf: str, node_python: Path) -> Path:
    """The hook as a node has it: in the bundle, with health.env and per-node health.d/ beside it."""
    plan = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))
    bin_dir = install_bundle(plan.files, tmp_path / "opt" / "gpufleet") / "health"
    # On a node on_create makes the bundle's scripts executable (test_on_create checks it).
    (bin_dir / HOOK.name).chmod(0o755)
    (bin_dir / "health.d").mkdir()
    healthy = fake_tools(tmp_path / "tools-healthy", "nvidia_smi_q_h100x8_healthy.xml")
    fake_tools(tmp_path / "tools-dbe", "nvidia_smi_q_h100x8_dbe.xml")
    (bin_dir / "health.env").write_text(
        f"GPUFLEET_PYTHON={node_python}\nSLURM_CONF={slurm_conf}\nGPUFLEET_INSTANCE_TYPE=p5.48xlarge\n"
        f"GPUFLEET_NO_IMDS=1\nGPUFLEET_HEALTH_DISK_PATHS=/tmp\nPATH={healthy}:$PATH\n")
    return bin_dir


def node_reason(slurm, node: str) -> str:
    """The full Reason= of scontrol show node (it may contain spaces), without the [user@time] tail."""
    text = slurm.run("scontrol", "show", "node", node).stdout
    match = re.search(r"\bReason=(.*?)(?: \[[^\]]*\])?$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def test_failing_node_is_drained_and_queued_work_avoids_it(tmp_path, make_local_slurm, node_python):
    for binary in ("slurmctld", "slurmd", "munged", "unshare"):
        require_binary(binary)
    root = Path(tempfile.mkdtemp(prefix="gpufleet-slurm-", dir="/tmp"))  # socket paths stay short
    bin_dir = install_hook(tmp_path, str(root / "etc" / "slurm.conf"), node_python)
    slurm = make_local_slurm(num_nodes=3, root=root, health_check_program=str(bin_dir / HOOK.name),
                             health_check_interval_s=2)
    # node3's GPU at 86:00.0 takes a double-bit ECC error while the cluster is up.
    node3_env = bin_dir / "health.d" / "node3.env"
    node3_env.write_text(f"PATH={tmp_path / 'tools-dbe'}:$PATH\n")
    slurm.wait_until(lambda: "DRAIN" in slurm.node("node3").state.upper(), timeout=45, what="node3 drained")
    reason = node_reason(slurm, "node3")
    assert reason.startswith("gpufleet: ecc: GPU 00000000:86:00.0: 2 volatile uncorrectable"), reason
    assert {slurm.node(n).state.lower() for n in ("node1", "node2")} == {"idle"}

    two = slurm.sbatch("#!/bin/bash\nsleep 1\n", "-N", "2", "--exclusive")
    three = slurm.sbatch("#!/bin/bash\nsleep 1\n", "-N", "3", "--exclusive")
    slurm.wait_until(lambda: slurm.job(two).state == "COMPLETED", timeout=45, what="2-node job done")
    assert slurm.job(two).nodes == "node[1-2]"
    assert slurm.job(three).state == "PENDING"

    # The GPU is reset (fixture healthy again): the hook lifts its own drain, the 3-node job runs.
    node3_env.write_text(f"PATH={tmp_path / 'tools-healthy'}:$PATH\n")
    slurm.wait_until(lambda: slurm.job(three).state == "COMPLETED", timeout=60, what="3-node job done")
    assert slurm.job(three).nodes == "node[1-3]"


def test_operator_drain_is_not_lifted(tmp_path, make_local_slurm, node_python):
    for binary in ("slurmctld", "slurmd", "munged", "unshare"):
        require_binary(binary)
    root = Path(tempfile.mkdtemp(prefix="gpufleet-slurm-", dir="/tmp"))  # socket paths stay short
    bin_dir = install_hook(tmp_path, str(root / "etc" / "slurm.conf"), node_python)
    slurm = make_local_slurm(num_nodes=2, root=root, health_check_program=str(bin_dir / HOOK.name),
                             health_check_interval_s=2)
    slurm.run("scontrol", "update", "nodename=node2", "state=drain", "reason=bad DIMM, ticket 4711")
    marker = tmp_path / "ran"
    (bin_dir / "health.d" / "node2.env").write_text(f"GPUFLEET_HEALTH_TEXTFILE={marker}\n")
    slurm.wait_until(lambda: marker.exists(), timeout=30, what="health check ran on node2")
    slurm.wait_until(lambda: marker.stat().st_mtime > 0 and "gpufleet_health_node_status" in marker.read_text(),
                     timeout=30, what="textfile written")
    assert node_reason(slurm, "node2") == "bad DIMM, ticket 4711" and "DRAIN" in slurm.node("node2").state.upper()

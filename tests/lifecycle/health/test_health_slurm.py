"""Against a real local Slurm: the health hook drains the node whose GPUs report a double-bit ECC
error, queued work avoids it, and the hook resumes it once the node is healthy again.

The fault is injected at the device boundary: each node's health.d/<node>.env puts a directory of
fake ``nvidia-smi`` / ``fi_info`` / ``dmesg`` first on PATH, answering with recorded outputs.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from fixture_runner import fake_tools

from tests.conftest import REPO, require_binary

pytestmark = pytest.mark.slurm

HOOK = REPO / "lifecycle" / "health" / "slurm_healthcheck.sh"


def install_hook(tmp_path: Path, slurm_conf: str) -> Path:
    """The hook as the bootstrap installs it: script, health.env, per-node health.d/."""
    bin_dir = tmp_path / "gpufleet"
    (bin_dir / "health.d").mkdir(parents=True)
    shutil.copy(HOOK, bin_dir / HOOK.name)
    healthy = fake_tools(tmp_path / "tools-healthy", "nvidia_smi_q_h100x8_healthy.xml")
    fake_tools(tmp_path / "tools-dbe", "nvidia_smi_q_h100x8_dbe.xml")
    (bin_dir / "health.env").write_text(
        f"GPUFLEET_PYTHON={sys.executable}\nSLURM_CONF={slurm_conf}\nGPUFLEET_INSTANCE_TYPE=p5.48xlarge\n"
        f"GPUFLEET_NO_IMDS=1\nGPUFLEET_HEALTH_DISK_PATHS=/tmp\nPATH={healthy}:$PATH\n"
        f"PYTHONPATH={REPO}\n")
    return bin_dir


def node_reason(slurm, node: str) -> str:
    """The full Reason= of scontrol show node (it may contain spaces), without the [user@time] tail."""
    text = slurm.run("scontrol", "show", "node", node).stdout
    match = re.search(r"\bReason=(.*?)(?: \[[^\]]*\])?$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def test_failing_node_is_drained_and_queued_work_avoids_it(tmp_path, make_local_slurm):
    for binary in ("slurmctld", "slurmd", "munged", "unshare"):
        require_binary(binary)
    root = Path(tempfile.mkdtemp(prefix="gpufleet-slurm-", dir="/tmp"))  # socket paths stay short
    bin_dir = install_hook(tmp_path, str(root / "etc" / "slurm.conf"))
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


def test_operator_drain_is_not_lifted(tmp_path, make_local_slurm):
    for binary in ("slurmctld", "slurmd", "munged", "unshare"):
        require_binary(binary)
    root = Path(tempfile.mkdtemp(prefix="gpufleet-slurm-", dir="/tmp"))  # socket paths stay short
    bin_dir = install_hook(tmp_path, str(root / "etc" / "slurm.conf"))
    slurm = make_local_slurm(num_nodes=2, root=root, health_check_program=str(bin_dir / HOOK.name),
                             health_check_interval_s=2)
    slurm.run("scontrol", "update", "nodename=node2", "state=drain", "reason=bad DIMM, ticket 4711")
    marker = tmp_path / "ran"
    (bin_dir / "health.d" / "node2.env").write_text(f"GPUFLEET_HEALTH_TEXTFILE={marker}\n")
    slurm.wait_until(lambda: marker.exists(), timeout=30, what="health check ran on node2")
    slurm.wait_until(lambda: marker.stat().st_mtime > 0 and "gpufleet_health_node_status" in marker.read_text(),
                     timeout=30, what="textfile written")
    assert node_reason(slurm, "node2") == "bad DIMM, ticket 4711" and "DRAIN" in slurm.node("node2").state.upper()

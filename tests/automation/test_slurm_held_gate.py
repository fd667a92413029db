"""A Slurm node group grows by one held node, on a real local Slurm: the job waits, the health gate
runs on the new node (srun through its hold reservation, the bundle's health code), the node is
admitted, the job runs there.

The node is registered as the GPU nodes' bootstrap registers it (lifecycle/slurm/hold-node.sh, then
``slurmd -Z``); the checks run with an interpreter holding only the node's packages over the bundle
the stack builds (tests/lifecycle/node_image.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gpufleet.automation.health.gate import NodeCheckGate
from gpufleet.automation.health.probe import SlurmProbe
from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.conftest import REPO
from tests.lifecycle.node_image import node_python_and_bundle

pytestmark = pytest.mark.slurm

IID = "i-0abc1234"  # short: slurmstepd socket paths (spool/<node>/<node>_<job>.<step>) must fit 108 bytes
NODE = f"train-h100-{IID}"  # the bootstrap's name: <group>-<instance id>


@pytest.fixture(scope="module")
def node_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(node interpreter, install dir holding the bundle the training stack uploads)."""
    return node_python_and_bundle(tmp_path_factory, plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml")).files)


def test_a_new_node_serves_nothing_until_the_gate_admits_it(make_local_slurm, node_install) -> None:
    python, install_dir = node_install
    slurm = make_local_slurm(num_nodes=1)
    busy = slurm.sbatch("#!/bin/bash\nsleep 120\n", "-N", "1")
    slurm.wait_until(lambda: slurm.job(busy).state == "RUNNING", timeout=30, what="node1 busy")

    # The group grows by one node: it registers held, and a job submitted now has only that node.
    slurm.register_dynamic_node(NODE, held=True)
    assert f"Nodes={NODE} " in slurm.run("scontrol", "-o", "show", "reservation", hold_reservation(NODE)).stdout
    out = slurm.root / "jobs" / "waiting.out"
    waiting = slurm.sbatch("#!/bin/bash\necho \"$SLURMD_NODENAME\"\n", "-N", "1", "-o", str(out))
    deadline = time.monotonic() + 6  # several scheduler passes (sched_interval=1, bf_interval=1)
    while time.monotonic() < deadline:
        assert slurm.job(waiting).state == "PENDING", slurm.job(waiting)
        time.sleep(0.5)
    client = SlurmClient(slurm.env)
    orchestrator = SlurmOrchestrator(client)
    assert orchestrator.ready([IID]) == set()

    # The gate: srun onto the held node through its reservation, the bundle's own health code.
    probe = SlurmProbe(client, python=str(python), install_dir=str(install_dir),
                       node_env={"GPUFLEET_INSTANCE_TYPE": "none", "GPUFLEET_NO_IMDS": "1"}, timeout_s=600)
    verdict = NodeCheckGate(lambda stack: probe, ("quick",)).check("training", [IID])
    assert verdict.passed == [IID], verdict

    def gate_jobs() -> list[str]:
        return [line for line in slurm.run("scontrol", "-o", "show", "job").stdout.splitlines()
                if f"JobName={SlurmProbe.JOB_NAME}" in line]

    (gate_job,) = gate_jobs()
    assert f"NodeList={NODE} " in gate_job and f"Reservation={hold_reservation(NODE)} " in gate_job
    # srun returns when its step ends; the job itself completes a moment later (COMPLETING first).
    slurm.wait_until(lambda: "JobState=COMPLETED " in gate_jobs()[0], timeout=30, what="the gate job completed")
    assert slurm.job(waiting).state == "PENDING"  # passing the gate admits nothing by itself

    orchestrator.admit([IID])
    slurm.wait_until(lambda: slurm.job(waiting).state == "COMPLETED", timeout=30, what="the waiting job ran")
    assert out.read_text().split() == [NODE]
    assert orchestrator.ready([IID]) == {IID}
    assert hold_reservation(NODE) not in slurm.run("scontrol", "show", "reservation").stdout


def test_a_failing_node_stays_held(make_local_slurm, node_install) -> None:
    python, install_dir = node_install
    slurm = make_local_slurm(num_nodes=1)
    slurm.register_dynamic_node(NODE, held=True)
    client = SlurmClient(slurm.env)
    # The node's checks find a GPU node with no GPUs (an instance type whose GPUs are missing).
    probe = SlurmProbe(client, python=str(python), install_dir=str(install_dir),
                       node_env={"GPUFLEET_INSTANCE_TYPE": "p5.48xlarge", "GPUFLEET_NO_IMDS": "1"}, timeout_s=600)
    verdict = NodeCheckGate(lambda stack: probe, ("quick",)).check("training", [IID])
    assert verdict.passed == [] and IID in verdict.failed, verdict
    job = slurm.sbatch("#!/bin/bash\ntrue\n", "-N", "1", "-w", NODE)
    time.sleep(3)
    assert slurm.job(job).state == "PENDING"
    assert hold_reservation(NODE) in slurm.run("scontrol", "show", "reservation").stdout

"""A Slurm GPU node that comes back (a reboot, a crash, a restart of slurmd) registers held again,
on a real local Slurm 22.05: slurmd's unit runs the bundle's hold-node.sh before every start
(ExecStartPre, bootstrap step 70-join; tests/lifecycle/bootstrap/test_on_create.py checks the
unit), so the node goes back through the gate before any job lands.

The harness has no RebootProgram (slurmctld refuses ``scontrol reboot``, tests/automation/heal), so
a reboot is what the instance does to Slurm: slurmd dies (SIGKILL of its namespace, jobs and all),
the unit's ExecStopPost runs on a clean shutdown (delete the reservation and the node record) and
not on a crash, and at boot the unit's ExecStartPre, then ``slurmd -Z``.
"""

from __future__ import annotations

import time

import pytest

from gpufleet.automation.health.gate import NodeCheckGate
from gpufleet.automation.health.probe import SlurmProbe
from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.lifecycle.slurm.hold import HOLD_SCRIPT, hold_reservation
from tests.automation.test_slurm_held_gate import IID, NODE, node_install  # noqa: F401 (the fixture)
from tests.conftest import REPO

pytestmark = pytest.mark.slurm
BACK = ("IDLE", "MAINT", "MIXED", "ALLOCATED")


def exec_start_pre(slurm, node: str = NODE) -> None:
    """What the unit runs before slurmd starts (the bundle's hold-node.sh)."""
    slurm.run("bash", str(REPO / "lifecycle" / HOLD_SCRIPT), node, slurm.spec.partitions[0].dynamic_node_conf())


def exec_stop_post(slurm, node: str = NODE) -> None:
    """What the unit runs once slurmd stopped (both ``-``: failures ignored)."""
    slurm.run("scontrol", "delete", f"reservation={hold_reservation(node)}", check=False)
    slurm.run("scontrol", "delete", f"nodename={node}", check=False)


def held(slurm) -> bool:
    """The node's hold reservation exists."""
    return slurm.run("scontrol", "-o", "show", "reservation", hold_reservation(NODE), check=False).returncode == 0


def stays_pending(slurm, job: int, seconds: float = 6) -> None:
    deadline = time.monotonic() + seconds  # several scheduler passes (sched_interval=1, bf_interval=1)
    while time.monotonic() < deadline:
        assert slurm.job(job).state == "PENDING", slurm.job(job)
        time.sleep(0.5)


def test_a_node_back_from_a_crash_under_its_jobs_is_held_until_the_gate_admits_it(make_local_slurm,
                                                                                   node_install) -> None:  # noqa: F811
    python, install_dir = node_install
    slurm = make_local_slurm(num_nodes=1)
    client = SlurmClient(slurm.env)
    orchestrator = SlurmOrchestrator(client)
    slurm.register_dynamic_node(NODE, held=True)
    orchestrator.admit([IID])
    lost = slurm.sbatch("#!/bin/bash\nsleep 300\n", "-N", "1", "-w", NODE)
    slurm.wait_until(lambda: slurm.job(lost).state == "RUNNING", timeout=30, what="a job on the admitted node")

    slurm.crash_node(NODE)  # the instance rebooted under its job: no ExecStopPost ran
    assert slurm.node(NODE).base_state == "ALLOCATED"  # slurmctld still counts the lost job on it
    exec_start_pre(slurm)  # Flags=IGNORE_JOBS: without it Slurm refuses "Requested nodes are busy"
    slurm.restart_node(NODE, states=BACK)
    assert held(slurm)
    assert orchestrator.ready([IID]) == set()
    out = slurm.root / "jobs" / "after-reboot.out"
    waiting = slurm.sbatch("#!/bin/bash\necho \"$SLURMD_NODENAME\"\n", "-N", "1", "-w", NODE, "-o", str(out))
    stays_pending(slurm, waiting)

    probe = SlurmProbe(client, python=str(python), install_dir=str(install_dir),
                       node_env={"GPUFLEET_INSTANCE_TYPE": "none", "GPUFLEET_NO_IMDS": "1"}, timeout_s=600)
    verdict = NodeCheckGate(lambda stack: probe, ("quick",)).check("training", [IID])
    assert verdict.passed == [IID], verdict
    gate_job = next(line for line in slurm.run("scontrol", "-o", "show", "job").stdout.splitlines()
                    if f"JobName={SlurmProbe.JOB_NAME}" in line)
    assert f"Reservation={hold_reservation(NODE)} " in gate_job
    orchestrator.admit([IID])
    slurm.wait_until(lambda: slurm.job(waiting).state == "COMPLETED", timeout=60, what="the job after admission")
    assert out.read_text().strip() == NODE


def test_a_node_stopped_cleanly_registers_held_again_and_without_the_hold_would_not(make_local_slurm) -> None:
    slurm = make_local_slurm(num_nodes=1)
    slurm.register_dynamic_node(NODE, held=True)
    SlurmOrchestrator(SlurmClient(slurm.env)).admit([NODE.removeprefix("train-h100-")])

    # What slurmctld does by itself: the node record goes with the clean shutdown, and slurmd -Z
    # registers a fresh dynamic node, schedulable at once (why the unit holds it first).
    slurm.crash_node(NODE)
    exec_stop_post(slurm)
    assert NODE not in slurm.nodes()
    slurm.restart_node(NODE, states=BACK)
    assert slurm.node(NODE).state == "IDLE+DYNAMIC_NORM" and not held(slurm)

    # With the unit's ExecStartPre: the same reboot registers it held.
    slurm.crash_node(NODE)
    exec_stop_post(slurm)
    exec_start_pre(slurm)
    slurm.restart_node(NODE, states=BACK)
    reservation = slurm.run("scontrol", "-o", "show", "reservation", hold_reservation(NODE)).stdout
    assert f"Nodes={NODE} " in reservation and "MAINT" in reservation, reservation
    waiting = slurm.sbatch("#!/bin/bash\ntrue\n", "-N", "1", "-w", NODE)
    stays_pending(slurm, waiting, seconds=4)

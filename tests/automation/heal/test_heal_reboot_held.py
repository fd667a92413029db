"""The healer's reboot when the node comes back held (GPU nodes re-register held at every start of
slurmd, tests/automation/test_slurm_reheld.py): it passes the gate, then the healer lifts the hold;
it fails the gate, and it stays held. On the real local Slurm with the sandbox's journal.

The harness has no RebootProgram, so slurmctld refuses the reboot (test_heal_slurm.py): the test
journals the call's success as the healer would have, and does to Slurm what the reboot does:
slurmd dies, the unit's ExecStartPre holds the node (the bundle's hold-node.sh's reservation),
slurmd registers, and slurmctld applies ``nextstate=RESUME``.
"""

from __future__ import annotations

import pytest

from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.automation.heal.test_heal_slurm import fleet  # noqa: F401 (the fixture)
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = pytest.mark.slurm
XID79 = "gpufleet: xid: GPU 0000:b9:00: Xid 79 GPU has fallen off the bus"


def hold(harness, node: str) -> None:
    """The reservation hold-node.sh makes (the static test node's record exists already)."""
    harness.run("scontrol", "create", "reservation", f"ReservationName={hold_reservation(node)}", f"Nodes={node}",
                "Users=root", "StartTime=now", "Duration=infinite", "Flags=MAINT,IGNORE_JOBS")


def reserved(harness, node: str) -> bool:
    return harness.run("scontrol", "-o", "show", "reservation", hold_reservation(node), check=False).returncode == 0


@pytest.mark.parametrize(("smi", "admitted"), [("nvidia_smi_q_h100x8_healthy.xml", True),
                                                ("nvidia_smi_q_h100x8_dbe.xml", False)])
def test_a_rebooted_node_back_held_joins_only_through_the_gate(fleet, tmp_path, smi, admitted):  # noqa: F811
    fleet.drain("node1", XID79)
    fleet.heal()  # slurmctld refuses the reboot here: the operation stays at DRAINED
    (op,) = [o for o in heal_ops(fleet.journal) if o.body["node"] == "node1"]
    assert op.state is MoveState.DRAINED
    fleet.journal.transition(fleet.journal.load(op.op_id), MoveState.RELEASED, {"reboot": "node1"})
    harness = fleet.harness
    harness.crash_node("node1")
    hold(harness, "node1")
    harness.restart_node("node1", states=("IDLE", "MAINT", "DRAINED", "DRAIN"))
    fleet.slurm.update_nodes(["node1"], State="RESUME")  # the reboot's nextstate=RESUME
    assert reserved(harness, "node1")

    devices = fake_tools(tmp_path / "devices", smi)
    fleet.probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": fleet.ref.group.instance_type,
                                  "PATH": f"{devices}:/usr/bin:/bin"}, timeout_s=120)
    report = fleet.heal()
    (done,) = [o for o in heal_ops(fleet.journal) if o.op_id == op.op_id]
    steps = [(e.event_type, e.step) for e in fleet.journal.events(op.op_id)]
    if admitted:
        assert done.state is MoveState.DONE, report
        assert done.body["gated"] == "node1" and not reserved(harness, "node1")
        job = harness.sbatch("#!/bin/bash\ntrue\n", "-N", "1", "-w", "node1")
        harness.wait_until(lambda: harness.job(job).state == "COMPLETED", timeout=60, what="a job on node1")
    else:
        assert done.state is MoveState.ROLLED_BACK, report
        assert reserved(harness, "node1")  # fail closed: it stays held
        assert "gated" not in done.body
    assert ("transition", str(MoveState.ACQUIRED)) in steps

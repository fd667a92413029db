"""A newcomer that fails its gate, in the integrated sandbox (tests/heal_sandbox.py: real slurmd
nodes for the emulated group's instances): the healer drains it ``gpufleet gate failed`` and the
next pass replaces it through the same path and budget; when the newcomers keep failing (here every
one: the gate sees a GPU whose row remapping failed), the last of a run of
``gate_failures_in_a_row`` is reported, not replaced again, and stays held."""

from __future__ import annotations

import sys
import time

import pytest

from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.decisions import HealAction
from gpufleet.automation.heal.observe import GATE_FAILED_REASON, REQUEST_REASON
from gpufleet.automation.heal.service import heal_ops
from gpufleet.automation.health.probe import NODE_PATH, SlurmProbe
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.heal_sandbox import integrated_sandbox

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

IN_A_ROW = 2


def test_a_newcomer_failing_its_gate_is_replaced_until_the_run_is_reported(sandbox, make_local_slurm):
    with integrated_sandbox(sandbox, make_local_slurm, prefix="gg", boot_delay_s=2.0) as isb:
        isb.start()
        desired = isb.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[isb.ref.group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"]
        (first,) = isb.in_service()
        isb.budget = HealBudget(per_group_per_hour=20, per_pool_per_hour=20, gate_failures_in_a_row=IN_A_ROW)
        # From now on the gate sees every newcomer with a GPU whose row remapping failed.
        isb.probe = SlurmProbe(isb.slurm, python=sys.executable, install_dir=isb.probe.install_dir,
                               node_env={**isb.probe.node_env, "PATH": f"{isb.hook.faulty}:{NODE_PATH}"}, timeout_s=300)
        isb.slurm.update_nodes([isb.first_node], State="DRAIN", Reason=REQUEST_REASON)

        reports = []
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            reports.append(isb.heal_once())
            if any("newcomers in a row failed their gate" in p for p in reports[-1].plan.patterns):
                break
            time.sleep(1)
        else:
            pytest.fail(f"no run reported: {[r.to_dict() for r in reports]}")
        assert all(r.ok for r in reports), [r.failures for r in reports if not r.ok]

        ops = sorted(heal_ops(isb.journal), key=lambda o: float(o.body["at"]))
        assert len(ops) == IN_A_ROW, [(o.op_id, o.state, o.body["signals"]) for o in ops]
        assert ops[0].body["instance_id"] == first and ops[0].body["signals"] == ["replace_requested"]
        for before, after in zip(ops, ops[1:], strict=False):
            # The failed newcomer of one operation is the faulty node of the next.
            assert after.body["instance_id"] == before.body["replaced_by"][0]
            assert after.body["signals"] == ["gate_failed"]
        for o in ops:
            assert o.state is MoveState.ROLLED_BACK and "row remapping failed" in o.body["gate_failed"], o.body
            events = [(e.event_type, e.step) for e in isb.journal.events(o.op_id)]
            i = events.index(("intent", "drain_newcomer"))
            assert events[i + 1] == ("result", "drain_newcomer")
            states = [e.state for e in isb.journal.events(o.op_id) if e.event_type == "transition"]
            assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED",
                              "ROLLING_BACK", "ROLLED_BACK"]

        # The last newcomer is reported, not replaced: still InService, drained by the healer, held.
        (last,) = ops[-1].body["replaced_by"]
        assert isb.in_service() == [last]
        node = next(n for n in isb.slurm.nodes() if last in n.instance_ids)
        assert "DRAIN" in node.state.upper() and node.reason.startswith(f"{GATE_FAILED_REASON}: {ops[-1].op_id}: ")
        assert hold_reservation(node.name) in {r["ReservationName"] for r in isb.slurm.reservations()}
        d = next(d for d in reports[-1].plan.decisions if d.node == node.name)
        assert d.action is HealAction.LEAVE and d.wanted is HealAction.REPLACE
        assert d.reason.startswith(f"held: {IN_A_ROW} newcomers in a row failed their gate")
        # Every replacement terminated one instance, keeping the group's desired capacity.
        terminations = [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
        assert len(terminations) == IN_A_ROW
        group = isb.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[isb.ref.group.asg_name])["AutoScalingGroups"][0]
        assert group["DesiredCapacity"] == desired
        assert sandbox.client.iam()["denials"] == []

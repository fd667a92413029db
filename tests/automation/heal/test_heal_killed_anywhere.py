"""A healer killed at any point of a replacement: the next pass finishes it from the journal.

On the real local Slurm with the sandbox's Auto Scaling group and journal (as test_heal_slurm.py).
A first pass counts the journal calls one replacement makes, the lease's included (through the
same dying client, given more calls than it makes); then, for each call in turn, a pass dies just
before it (its DynamoDB client stops answering, as a SIGKILLed process stops, and its owner is a
process that does not exist), and a pass of a live healer picks the operation up. Every time: the
node is replaced once, desired capacity kept, the journal's transitions go forward only, and the
lease is free at the end.
"""

from __future__ import annotations

import socket

import pytest

from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.service import HealArgs, heal_ops, heal_pass
from gpufleet.automation.lease import Leases
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.state import MoveState
from tests.automation.heal.test_heal_slurm import Fleet
from tests.automation.rebalance.test_rebalance_step import DEAD, DyingClient, Killed

pytestmark = [pytest.mark.slurm, pytest.mark.emulator, pytest.mark.timeout(900)]

ORDER = ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "HEALTHY", "JOINED", "DONE"]
FAULT = "gpufleet: ecc: GPU 0000:b9:00: row remapping failed (no spare rows)"
BUDGET = HealBudget(per_group_per_hour=100, per_pool_per_hour=100)
"""Every kill point replaces the node once more within the hour."""


@pytest.fixture
def fleet(sandbox, local_slurm, tmp_path):
    return Fleet(sandbox, local_slurm, tmp_path)


def heal_with(fleet, ddb, owner: str | None = None):
    journal = Journal(ddb, fleet.inventory.journal_table, owner=owner)
    args = HealArgs(inventory=fleet.inventory_path, probe="local", budget=BUDGET,
                    limits=Limits(drain_timeout_s=60, replace_timeout_s=60, reboot_timeout_s=5, poll_s=0.2,
                                  join_timeout_s=0, checkpoint_grace_s=0))
    return heal_pass(args, clients=fleet.clients, slurm=fleet.slurm, probes=lambda _stack: fleet.probe,
                     journal=journal)


def fault_on_node1(fleet, iid: str) -> str:
    """node1 as the bootstrap leaves a fresh instance (its id in the Comment), then faulty."""
    fleet.slurm.update_nodes(["node1"], Comment=iid)
    fleet.slurm.update_nodes(["node1"], State="RESUME", check=False)
    fleet.drain("node1", FAULT)
    return iid


def test_a_healer_killed_before_any_of_its_journal_calls_is_finished_by_the_next_pass(fleet, sandbox):
    real = fleet.clients(fleet.inventory.platform_stack, "dynamodb")
    desired = fleet.group()["DesiredCapacity"]
    bad = fault_on_node1(fleet, fleet.ids["node1"])
    budget = 1_000_000
    counting = DyingClient(real, budget)  # dies at no call: counts them
    (first,) = heal_with(fleet, counting).operations
    assert first["state"] == "DONE" and first["instance_id"] == bad
    calls = budget - counting.left
    newcomer = first["replaced_by"][0]
    assert calls >= len(ORDER), f"a replacement makes {calls} journal calls"
    ops_before = {op.op_id for op in heal_ops(fleet.journal)}
    dead = DEAD.format(host=socket.gethostname())
    for kill_at in range(calls):
        bad = fault_on_node1(fleet, newcomer)
        before = len(fleet.terminations(sandbox))
        with pytest.raises(Killed):
            heal_with(fleet, DyingClient(real, kill_at), owner=dead)
        report = heal_with(fleet, real)
        assert not report.failures, (kill_at, report.failures)
        new = [op for op in heal_ops(fleet.journal) if op.op_id not in ops_before]
        assert len(new) == 1, f"killed before call {kill_at}: {[(o.op_id, o.state) for o in new]}"
        (op,) = new
        ops_before.add(op.op_id)
        assert op.state is MoveState.DONE, (kill_at, op.state)
        assert op.body["instance_id"] == bad and op.body["replaced_by"], kill_at
        assert len(fleet.terminations(sandbox)) == before + 1, f"killed before call {kill_at}: one termination"
        assert bad not in fleet.in_service() and op.body["replaced_by"][0] in fleet.in_service()
        newcomer = op.body["replaced_by"][0]
        assert fleet.group()["DesiredCapacity"] == desired
        states = [e.state for e in fleet.journal.events(op.op_id) if e.event_type == "transition"]
        assert [ORDER.index(s) for s in states] == sorted({ORDER.index(s) for s in states}), (kill_at, states)
        assert states[-1] == "DONE"
        assert not Leases(fleet.journal).held(), kill_at
    assert sandbox.client.iam()["denials"] == []

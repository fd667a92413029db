"""A Capacity Block's deadline in the reconciler, against the sandbox: training on the block is
checkpointed, drained and given back to the reservation (its desired size lowered) before EC2
starts terminating the block's instances (its end less 30 minutes), through the journaled engine
under the pool's lease, one step-mode pass at a time; `rebalance ls` shows the moves. A pass killed
mid give-back is continued by the next; two passes at once never both act."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from gpufleet.automation.plan import load_specs
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.schedule import runner
from gpufleet.automation.schedule.model import CAPACITY_BLOCK_TERMINATION_LEAD
from tests.automation.rebalance.capacity_block import END, POOL
from tests.automation.rebalance.test_rebalance_step import DEAD, DyingClient, Killed

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
TERMINATION = END - CAPACITY_BLOCK_TERMINATION_LEAD
DRAIN_AT = "2026-03-10T10:54:00+00:00"
"""The platform stack drains in 5 minutes; a pass a minute may run one minute late."""


def gpufleet(*args):
    return subprocess.Popen([sys.executable, "-m", "gpufleet.automation", *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def reconcile(inventory, stacks_dir, at):
    return gpufleet("schedule", "reconcile", "--json", "--inventory", str(inventory), "--stacks-dir", str(stacks_dir),
                    "--at", at, "--probe", "orchestrator")


def finished(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out)


def moves(result):
    return [(m["from_role"], m["to_role"], m["nodes"], m["state"]) for m in result]


def test_training_on_a_block_is_drained_and_released_before_ec2_terminates(fleet, sandbox, block):
    """`schedule run` a pass a simulated minute from 10:45 to 11:05 UTC of the block's last day."""
    start = "2026-03-10T10:45:00+00:00"
    out = finished(gpufleet("schedule", "run", "--json", "--speed", "600", "--every", "60", "--from", start,
                            "--until", "2026-03-10T11:05:00+00:00", "--passes", "100", "--probe", "orchestrator",
                            "--inventory", str(block), "--stacks-dir", str(sandbox.stacks_dir)), timeout=200)
    passes = out["passes"]
    assert len(passes) == 20 and all(p["seconds"] < 60 for p in passes)
    started = [(dt.datetime.fromisoformat(p["now"]), m) for p in passes for m in p["started"]]
    at = {moves([m])[0]: when for when, m in started}
    # the fleet as applied (5 training, 2 inference, 1 free) first goes to the outside level, the
    # free slot to training; at 10:54 all 7 training nodes are given back to the reservation
    assert [moves([m])[0] for _, m in started] == [
        ("inference", "training", 1, "DONE"), ("released", "training", 1, "DONE"),
        ("training", "released", 7, "DONE"), ("inference", "released", 1, "DONE")], started
    drained = at[("training", "released", 7, "DONE")]
    assert drained == dt.datetime.fromisoformat(DRAIN_AT) and drained < TERMINATION
    assert at[("inference", "released", 1, "DONE")] == TERMINATION, "what served outside the window stays to the end"
    assert any(t["reason"].startswith("deadline: training drained") for p in passes for t in p["targets"])
    assert fleet.desired()[TRAIN] == 0 and fleet.desired()[SERVE] == 0
    fleet.check_invariant()
    [reservation] = [r for r in sandbox.reservations() if r["name"] == POOL]
    assert reservation["used"] == 0, reservation

    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    [drain] = [op for op in journal.list_ops() if op.body["plan"]["to_role"] == "released"
               and op.body["plan"]["from_role"] == "training"]
    assert drain.state is MoveState.DONE and drain.body["scheduled"] is True
    events = journal.events(drain.op_id)
    calls = [e.detail.get("call") for e in events if e.event_type == "intent"]
    assert calls.count("request_checkpoint") == 1 and calls.count("TerminateInstanceInAutoScalingGroup") == 7
    assert "SetDesiredCapacity" not in calls, "nothing is acquired for the reservation"
    assert [e.state for e in events if e.event_type == "transition"][-1] == "DONE"

    listing = finished(gpufleet("rebalance", "ls", "--json", "--inventory", str(block)))
    listed = {(m["from_role"], m["to_role"], m["nodes"], m["state"]) for m in listing["moves"]}
    assert {("training", "released", 7, "DONE"), ("released", "training", 1, "DONE")} <= listed


def test_a_pass_killed_mid_give_back_is_continued_by_the_next(fleet, sandbox, block):
    specs = load_specs(sandbox.stacks_dir)
    ddb = fleet.client("platform", "dynamodb")
    dies = DyingClient(ddb, 16)
    dying = runner.make_reconciler(block, specs, probe="orchestrator",
                                   clients=lambda inv: (lambda stack, service: dies if service == "dynamodb"
                                                        else fleet.client(stack, service)))
    dying.owner = DEAD.format(host=socket.gethostname())
    with pytest.raises(Killed):
        dying.once(dt.datetime.fromisoformat(DRAIN_AT))
    journal = Journal(ddb, fleet.inventory.journal_table)
    [op] = journal.list_ops(in_flight_only=True)
    assert (op.body["plan"]["from_role"], op.body["plan"]["to_role"], op.body["plan"]["nodes"]) == ("training", "released", 5)
    assert op.state is not MoveState.DONE
    result = finished(reconcile(block, sandbox.stacks_dir, DRAIN_AT))
    assert [(m["op_id"], m["state"]) for m in result["advanced"]] == [(op.op_id, "DONE")], result
    # then, the training drained, the surplus inference node goes back too (outside level: 1)
    assert moves(result["started"]) == [("inference", "released", 1, "DONE")]
    assert fleet.desired()[TRAIN] == 0 and fleet.desired()[SERVE] == 1
    fleet.check_invariant()


def test_two_passes_at_the_deadline_never_both_act(fleet, sandbox, block):
    procs = [reconcile(block, sandbox.stacks_dir, DRAIN_AT) for _ in range(2)]
    results = [finished(p) for p in procs]
    acted = [moves([m])[0] for r in results for m in r["started"] if m["state"] == "DONE"]
    # the give-back once; the surplus inference node after it, by whichever pass saw the pool free
    assert acted.count(("training", "released", 5, "DONE")) == 1, results
    assert acted.count(("inference", "released", 1, "DONE")) <= 1, results
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    done = [op for op in journal.list_ops() if op.state is MoveState.DONE]
    assert len(done) == len(acted)
    assert fleet.desired()[TRAIN] == 0 and fleet.desired()[SERVE] == 2 - acted.count(("inference", "released", 1, "DONE"))
    fleet.check_invariant()


def test_inference_is_never_placed_on_a_block_that_ends_inside_the_window(fleet, sandbox, block, tmp_path):
    """The calling window moved to 04:00-08:00 Chicago (09:00-13:00 UTC): on the block's last day
    EC2 terminates it at 11:00, inside the window, so nothing moves into inference for it; the day
    before, the same window is served."""
    stacks = tmp_path / "stacks"
    shutil.copytree(sandbox.stacks_dir, stacks)
    platform = stacks / "Pulumi.platform.yaml"
    text = platform.read_text()
    assert text.count('start: "09:00"') == 1 and text.count('end: "15:00"') == 1
    platform.write_text(text.replace('start: "09:00"', 'start: "04:00"').replace('end: "15:00"', 'end: "08:00"'))
    last_day = finished(reconcile(block, stacks, "2026-03-10T08:40:00+00:00"))
    assert [t["inference"] for t in last_day["targets"]] == [1]
    assert not [m for m in last_day["started"] if m["to_role"] == "inference"], last_day
    assert any("2026-03-10 09:00-13:00 UTC cannot be served" in f for f in last_day["findings"]), last_day
    assert moves(last_day["started"]) == [("inference", "training", 1, "DONE")], "to the outside level"
    day_before = finished(reconcile(block, stacks, "2026-03-09T08:40:00+00:00"))
    assert [t["inference"] for t in day_before["targets"]] == [5]
    assert moves(day_before["started"]) == [("released", "inference", 1, "DONE")], day_before
    assert not any("cannot be served" in f for f in day_before["findings"])

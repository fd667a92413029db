"""`gpufleet schedule reconcile` against the sandbox: passes inside the window move the pool's free
slot, then training nodes, into inference through the journaled engine, one move a pass; a further
pass changes nothing; two passes at once (two processes) never both act; a pass killed mid-move is
continued by the next."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys

import pytest

from gpufleet.automation.plan import load_specs
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.schedule import runner
from tests.automation.rebalance.test_rebalance_step import DEAD, DyingClient, Killed

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
IN_WINDOW = "2026-03-09T16:00:00+00:00"
"""Monday, inside 09:00-15:00 America/Chicago (14:00-20:00 UTC after the DST change)."""


def reconcile(fleet, stacks_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "gpufleet.automation", "schedule", "reconcile", "--json",
                             "--inventory", str(fleet.inventory_path), "--stacks-dir", str(stacks_dir), *extra],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


SEQUENCE = [("released", "inference", 1, "DONE"), ("training", "inference", 2, "DONE")]
"""What passes in the window do to the fleet as applied (5 training, 2 inference, 1 free slot), one
move a pass: the free slot first, then two training nodes."""


def moves(started):
    return [(m["from_role"], m["to_role"], m["nodes"], m["state"]) for m in started]


def test_a_pass_in_the_window_moves_capacity_and_the_next_pass_changes_nothing(fleet, sandbox):
    first = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert first["targets"] == [{"pool": "h100-use1-az4", "inference": 5, "training": 3, "scheduled": 5,
                                 "reason": "windows"}]
    assert moves(first["started"]) == SEQUENCE[:1]
    assert any("training -> inference wait for the move in flight" in f for f in first["findings"]), first
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 3
    second = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert moves(second["started"]) == SEQUENCE[1:] and second["advanced"] == []
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 5
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    for move in (*first["started"], *second["started"]):
        op = journal.load(move["op_id"])
        assert op.body["scheduled"] is True and op.body["gate"]["probe"] == "orchestrator"
    again = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert again["started"] == [] and again["advanced"] == []
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 5


def test_two_passes_at_once_never_both_act(fleet, sandbox):
    procs = [reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator") for _ in range(2)]
    results = [finished(p) for p in procs]
    acted = sorted((m for r in results for m in moves(r["started"]) if m[3] == "DONE"), key=SEQUENCE.index)
    # each order at most once; the second one only by a pass that saw the pool free after the first
    assert acted in (SEQUENCE[:1], SEQUENCE), results
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    assert len([op for op in journal.list_ops() if op.state is MoveState.DONE]) == len(acted)
    assert (fleet.desired()[TRAIN], fleet.desired()[SERVE]) == ((5, 3) if len(acted) == 1 else (3, 5))
    fleet.check_invariant()


def test_a_pass_killed_mid_move_is_continued_by_the_next(fleet, sandbox):
    specs = load_specs(sandbox.stacks_dir)
    at = dt.datetime.fromisoformat(IN_WINDOW)
    ddb = fleet.client("platform", "dynamodb")
    dies = DyingClient(ddb, 14)
    dying = runner.make_reconciler(fleet.inventory_path, specs, probe="orchestrator",
                                   clients=lambda inv: (lambda stack, service: dies if service == "dynamodb"
                                                        else fleet.client(stack, service)))
    dying.owner = DEAD.format(host=socket.gethostname())
    with pytest.raises(Killed):
        dying.once(at)
    journal = Journal(ddb, fleet.inventory.journal_table)
    [op] = journal.list_ops(in_flight_only=True)
    assert op.state is not MoveState.DONE
    # the next pass, another process, takes the dead pass's lease over at once (its owner is gone)
    result = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert [(m["op_id"], m["state"]) for m in result["advanced"]] == [(op.op_id, "DONE")], result
    assert moves([m for m in result["advanced"]]) == SEQUENCE[:1]
    assert moves(result["started"]) == SEQUENCE[1:], "the pool is free again: the next order starts"
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 5
    fleet.check_invariant()


def test_the_sandbox_runs_a_compressed_day(fleet, sandbox):
    """`schedule run --speed 600 --every 300` from 13:30 to 20:30 UTC of a Monday (7 simulated hours,
    a pass every 5 simulated minutes, 42 s of wall time or what 84 passes take): capacity moves into inference before the window opens (14:00 UTC) and back after it
    closes (20:00 UTC), through the real engine, journal and the sandbox's gate probe."""
    start, until = "2026-03-09T13:30:00+00:00", "2026-03-09T20:30:00+00:00"
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet.automation", "schedule", "run", "--json", "--speed", "600", "--every", "300",
                             "--from", start, "--until", until, "--passes", "3000", "--probe", "orchestrator",
                             "--inventory", str(fleet.inventory_path), "--stacks-dir", str(sandbox.stacks_dir)],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=170)
    assert proc.returncode == 0, err
    passes = json.loads(out)["passes"]
    started = [(dt.datetime.fromisoformat(p["now"]), m) for p in passes for m in p["started"]]
    # the fleet as applied serves 2 outside the window: the first pass brings it to the outside
    # level, the next gives the free slot to training
    assert [(m["from_role"], m["to_role"], m["nodes"], m["state"]) for _, m in started] == [
        ("inference", "training", 1, "DONE"), ("released", "training", 1, "DONE"),
        ("training", "inference", 4, "DONE"), ("inference", "training", 4, "DONE")], started
    (first, _), (free, _), (into, _), (back, _) = started
    assert first == dt.datetime.fromisoformat(start) and free == first + dt.timedelta(minutes=5)
    assert len(passes) == 84 and all(p["seconds"] < 60 for p in passes)
    opens, closes = dt.datetime(2026, 3, 9, 14, tzinfo=dt.UTC), dt.datetime(2026, 3, 9, 20, tzinfo=dt.UTC)
    assert into == opens - dt.timedelta(minutes=20), "moved in one lead + drain (15 + 5 min) ahead of the window"
    assert back == closes, "moved back once the window closed"
    assert fleet.desired()[TRAIN] == 7 and fleet.desired()[SERVE] == 1
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    day = [op for op in journal.list_ops() if op.body.get("scheduled")]
    assert [op.state for op in day] == [MoveState.DONE] * 4

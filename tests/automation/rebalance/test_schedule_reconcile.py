"""`gpufleet schedule reconcile` against the sandbox: a pass inside the window moves training
nodes into inference through the journaled engine; a second pass changes nothing; two passes at
once (two processes) never both act; a pass killed mid-move is continued by the next."""

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


def test_a_pass_in_the_window_moves_capacity_and_the_next_pass_changes_nothing(fleet, sandbox):
    first = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert first["targets"] == [{"pool": "h100-use1-az4", "inference": 5, "training": 3, "scheduled": 5,
                                 "reason": "windows"}]
    [move] = first["started"]
    assert (move["from_role"], move["to_role"], move["nodes"], move["state"]) == ("training", "inference", 2, "DONE")
    assert any("released -> inference" in f and "not started" in f for f in first["findings"])
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    op = journal.load(move["op_id"])
    assert op.body["scheduled"] is True and op.body["gate"]["probe"] == "orchestrator"
    again = finished(reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator"))
    assert again["started"] == [] and again["advanced"] == []
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4


def test_two_passes_at_once_never_both_act(fleet, sandbox):
    procs = [reconcile(fleet, sandbox.stacks_dir, "--at", IN_WINDOW, "--probe", "orchestrator") for _ in range(2)]
    results = [finished(p) for p in procs]
    acted = [m for r in results for m in r["started"] if m["state"] == "DONE"]
    assert len(acted) == 1, results
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
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
    assert result["started"] == []
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 4
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
    # the fleet as applied serves 2 outside the window: the first pass brings it to the outside level
    assert [(m["from_role"], m["to_role"], m["nodes"], m["state"]) for _, m in started] == [
        ("inference", "training", 1, "DONE"), ("training", "inference", 3, "DONE"),
        ("inference", "training", 3, "DONE")], started
    (first, _), (into, _), (back, _) = started
    assert first == dt.datetime.fromisoformat(start)
    assert len(passes) == 84 and all(p["seconds"] < 60 for p in passes)
    opens, closes = dt.datetime(2026, 3, 9, 14, tzinfo=dt.UTC), dt.datetime(2026, 3, 9, 20, tzinfo=dt.UTC)
    assert into == opens - dt.timedelta(minutes=20), "moved in one lead + drain (15 + 5 min) ahead of the window"
    assert back == closes, "moved back once the window closed"
    assert fleet.desired()[TRAIN] == 6 and fleet.desired()[SERVE] == 1
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    day = [op for op in journal.list_ops() if op.body.get("scheduled")]
    assert [op.state for op in day] == [MoveState.DONE] * 3

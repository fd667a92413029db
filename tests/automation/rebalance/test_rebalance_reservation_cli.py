"""`gpufleet rebalance --to released` and `--from released` by an operator, through the CLI against
the sandbox: the same engine path the scheduler's deadline moves take (a give-back checkpoints,
drains and terminates its victims with the desired size decremented and acquires nothing; a
take-free drains nothing and fills free slots), `rebalance ls/show` name the reservation side, and
nonsense exits 2 having written nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpufleet.automation.rebalance.journal import Journal

pytestmark = pytest.mark.emulator

TRAIN, SERVE = "train-h100", "serve-h100"
POOL = "h100-use1-az4"


def gpufleet(fleet, *args, inventory=None, columns=80):
    return subprocess.run([sys.executable, "-m", "gpufleet.automation", *args, "--inventory",
                           str(inventory or fleet.inventory_path)],
                          env={**os.environ, "COLUMNS": str(columns)}, capture_output=True, text=True, timeout=300)


def used(fleet) -> int:
    [r] = [r for r in fleet.control.reservations() if r["name"] == POOL]
    return r["used"]


def writes(fleet) -> list[str]:
    return [r["action"] for r in fleet.control.requests()
            if not r["action"].startswith(("Describe", "Get", "Query", "Scan", "AssumeRole"))]


def test_an_operator_gives_nodes_back_to_the_reservation(fleet):
    dry = gpufleet(fleet, "rebalance", "--from", "training", "--to", "released", "--nodes", "2", "--pool", POOL, "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["plan"]
    assert (plan["dest_stack"], plan["free_before"], plan["free_after"], len(plan["victims"])) == ("", 1, 3, 2)
    assert writes(fleet) == [] and used(fleet) == 7
    done = gpufleet(fleet, "rebalance", "--from", "training", "--to", "released", "--nodes", "2", "--pool", POOL,
                    "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["state"], result["acquired"], result["to_role"]) == ("DONE", [], "released")
    assert result["dest"] == {"stack": "", "name": "", "pool": POOL, "instance_type": "p5.48xlarge", "asg_name": ""}
    assert "nothing to acquire" in " ".join(p["message"] for p in result["progress"])
    assert fleet.desired()[TRAIN] == 3 and fleet.desired()[SERVE] == 2 and used(fleet) == 5
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    events = journal.events(result["op_id"])
    calls = [e.detail.get("call") for e in events if e.event_type == "intent"]
    assert calls.count("request_checkpoint") == 1 and calls.count("TerminateInstanceInAutoScalingGroup") == 2
    assert "SetDesiredCapacity" not in calls and "health_gate" not in calls
    assert all(e.detail["decrement"] for e in events if e.detail.get("call") == "TerminateInstanceInAutoScalingGroup")
    # the scheduler's own moves are journaled scheduled; an operator's are not
    assert "scheduled" not in journal.load(result["op_id"]).body

    listing = gpufleet(fleet, "rebalance", "ls")
    assert listing.returncode == 0 and "training ->" in listing.stdout and "released" in listing.stdout
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80
    shown = gpufleet(fleet, "rebalance", "show", result["op_id"], columns=200)
    assert shown.returncode == 0, shown.stderr
    assert f"training/train-h100 -> pool {POOL}'s reservation" in shown.stdout
    assert "acquired: none" in shown.stdout and "health gate" not in shown.stdout


def test_an_operator_takes_free_slots(fleet):
    done = gpufleet(fleet, "rebalance", "--from", "released", "--to", "inference", "--nodes", "1", "--pool", POOL,
                    "--yes", "--probe", "orchestrator", columns=200)
    assert done.returncode == 0, done.stderr
    assert f"pool {POOL}'s reservation -> inference/serve-h100" in done.stdout
    assert "nodes to release: none" in done.stdout
    assert fleet.desired()[SERVE] == 3 and fleet.desired()[TRAIN] == 5 and used(fleet) == 8
    fleet.check_invariant()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    [op] = journal.list_ops()
    calls = [e.detail.get("call") for e in journal.events(op.op_id) if e.event_type == "intent"]
    assert "request_checkpoint" not in calls and "TerminateInstanceInAutoScalingGroup" not in calls
    assert calls.count("SetDesiredCapacity") == 1 and calls.count("health_gate") == 1
    shown = gpufleet(fleet, "rebalance", "show", op.op_id, columns=200)
    assert "released: none (the nodes came from the pool's free slots)" in shown.stdout
    # the pool is full now: one more is refused, exit 2, nothing written
    fleet.control.reset()
    more = gpufleet(fleet, "rebalance", "--from", "released", "--to", "training", "--nodes", "1", "--pool", POOL, "--yes")
    assert more.returncode == 2 and "has only 0 free node(s)" in more.stderr, more.stderr
    assert writes(fleet) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--from", "released", "--to", "released", "--nodes", "1"], "--from and --to are both 'released'"),
    (["--from", "released", "--to", "gaming", "--nodes", "1"], "--to 'gaming': no consumer stack has that role"),
    (["--from", "training", "--to", "released", "--nodes", "1"], "training uses 2 pools; name one with --pool"),
    (["--from", "training", "--to", "released", "--nodes", "9", "--pool", POOL], "has only 5 InService nodes"),
    (["--from", "released", "--to", "inference", "--nodes", "1", "--pool", "nowhere"], "--pool 'nowhere' is not used"),
])
def test_nonsense_exits_2_and_writes_nothing(fleet, argv, message):
    done = gpufleet(fleet, "rebalance", *argv, "--yes")
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert writes(fleet) == [] and fleet.desired()[TRAIN] == 5


def test_a_pool_without_a_reservation_has_nothing_to_give_back_to(fleet, tmp_path):
    doc = json.loads(fleet.inventory_path.read_text())
    [pool] = [p for stack in doc["stacks"].values() for p in stack.get("pools", []) if p["name"] == POOL]
    pool.update(kind="on-demand", reservationId=None, reservationArn=None, shareArn=None)
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc))
    for argv in (["--from", "training", "--to", "released"], ["--from", "released", "--to", "inference"]):
        done = gpufleet(fleet, "rebalance", *argv, "--nodes", "1", "--pool", POOL, "--yes", inventory=path)
        assert done.returncode == 2, done.stderr
        assert f"pool {POOL} is on-demand and has no capacity reservation" in done.stderr
    assert writes(fleet) == []
    assert fleet.desired()[TRAIN] == 5

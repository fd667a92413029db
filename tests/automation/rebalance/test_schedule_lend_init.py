"""`gpufleet schedule lend-init` through the CLI against the sandbox with IAM enforced: the first
interruptible allocation of a lending pool is made once, kept at zero, journaled under the pool's
lease, and its id is the line training's lent group needs; bad input is refused with nothing made."""

from __future__ import annotations

import json

import boto3
import pytest

from gpufleet.automation.plan import load_specs
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.schedule.lending import read_allocation
from tests.automation.rebalance.test_schedule_deadline import finished, gpufleet
from tests.automation.rebalance.test_schedule_lend import settled
from tests.automation.sandbox.test_capacity import NO_RETRY
from tests.automation.sandbox.test_interruptible import POOL

pytestmark = pytest.mark.emulator


def lend_init(sandbox, stacks, *args, inventory=None):
    return gpufleet("schedule", "lend-init", "--pool", POOL, "--inventory", str(inventory or sandbox.inventory),
                    "--stacks-dir", str(stacks), *args)


def source_of(sandbox) -> str:
    doc = json.loads(sandbox.inventory.read_text())
    return next(p for s in doc["stacks"].values() for p in s.get("pools", []) if p["name"] == POOL)["reservationId"]


def text_of(proc) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def test_lend_init_makes_the_allocation_once_and_keeps_it_at_zero(fleet, sandbox, lend_stacks):
    platform, source = boto3.client("ec2", config=NO_RETRY), source_of(sandbox)
    dry = finished(lend_init(sandbox, lend_stacks, "--json", "--dry-run"))
    assert (dry["action"], dry["lent_id"], dry["op_id"]) == ("would-create", None, None)
    assert finished(lend_init(sandbox, lend_stacks, "--json"))["action"] == "would-create", "no --yes: a dry run"
    assert read_allocation(platform, source).lent_id is None, "a dry run makes nothing"

    made = finished(lend_init(sandbox, lend_stacks, "--json", "-y"))
    assert made["action"] == "created" and made["lent_id"].startswith("cr-") and made["op_id"].startswith("ln-")
    assert made["line"] == f"lentReservationId: {made['lent_id']}"
    assert made["stack_file"].endswith("Pulumi.training.yaml") and made["group"] is None
    now = settled(platform, source)
    assert (now.lent_id, now.lent, now.used, now.status) == (made["lent_id"], 0, 0, "active")
    assert sandbox.client.interruptions() == []
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    events = journal.events(made["op_id"])
    assert [e.event_type for e in events] == ["intent", "result"] and events[0].detail["token"] >= 1
    assert (events[1].detail["action"], events[1].detail["after"], events[1].detail["lent_id"]) == \
        ("reclaimed", 0, made["lent_id"])
    assert not journal.list_ops(), "a lending step is events only, not a move"

    again = text_of(lend_init(sandbox, lend_stacks, "-y"))
    assert f"pool {POOL}: {made['lent_id']} lent from {source} exists: nothing changed" in " ".join(again.split())
    assert f"    lentReservationId: {made['lent_id']}\n" in again
    assert settled(platform, source).lent_id == made["lent_id"]

    # the printed line, under a lent group in the training stack file, is what the stack files accept
    training = lend_stacks / "Pulumi.training.yaml"
    text = training.read_text()
    anchor = "      maxNodes: 8\n"
    assert text.count(anchor) == 1
    group = (f"    - name: train-h100-lent\n      pool: {POOL}\n      instanceType: p5.48xlarge\n"
             "      initialNodes: 0\n      minNodes: 0\n      maxNodes: 3\n")
    training.write_text(text.replace(anchor, anchor + group + f"      {made['line']}\n"))
    [spec] = [s for s in load_specs(lend_stacks) if s.role.value == "training"]
    assert [g.lent_reservation_id for g in spec.node_groups if g.name == "train-h100-lent"] == [made["lent_id"]]
    named = text_of(lend_init(sandbox, lend_stacks))
    assert "node group train-h100-lent already names it" in " ".join(named.split()) and "add to" not in named


def refused(proc) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err)
    return " ".join(err.split())


def test_lend_init_refuses_bad_input_and_makes_nothing(fleet, sandbox, lend_stacks, tmp_path):
    platform, source = boto3.client("ec2", config=NO_RETRY), source_of(sandbox)
    err = refused(gpufleet("schedule", "lend-init", "-y", "--pool", "h100-nowhere", "--inventory",
                           str(sandbox.inventory), "--stacks-dir", str(lend_stacks)))
    assert "Pulumi.platform.yaml: gpufleet:pools = 'h100-nowhere': no such pool" in err
    # the reference schedule does not lend
    err = refused(lend_init(sandbox, sandbox.stacks_dir, "-y"))
    assert "Pulumi.platform.yaml: gpufleet:schedule[0].lend = None" in err and "does not lend" in err
    # the inventory says the pool is a Capacity Block (the stack file's lend is refused on one too)
    doc = json.loads(sandbox.inventory.read_text())
    [pool] = [p for s in doc["stacks"].values() for p in s.get("pools", []) if p["name"] == POOL]
    pool.update(kind="capacity-block", startTime="2026-03-01T11:30:00+00:00", endTime="2026-03-10T11:30:00+00:00")
    block = tmp_path / "block.json"
    block.write_text(json.dumps(doc))
    err = refused(lend_init(sandbox, lend_stacks, "-y", inventory=block))
    assert f"{block}: pools[{POOL}].kind = 'capacity-block'" in err and "Capacity Block" in err
    assert read_allocation(platform, source).lent_id is None, "nothing made"


def test_a_first_run_stopped_before_keeping_it_at_zero_is_finished_by_the_next(fleet, sandbox, lend_stacks):
    platform, source = boto3.client("ec2", config=NO_RETRY), source_of(sandbox)
    # what a run killed between EC2's create and the reclaim leaves: one slot lent, no lent group targeting it
    platform.create_interruptible_capacity_reservation_allocation(CapacityReservationId=source, InstanceCount=1)
    left = read_allocation(platform, source)
    assert left.lent == 1 and left.lent_id
    dry = finished(lend_init(sandbox, lend_stacks, "--json", "--dry-run"))
    assert (dry["action"], dry["lent_id"]) == ("would-finish", left.lent_id)
    done = finished(lend_init(sandbox, lend_stacks, "--json", "-y"))
    assert (done["action"], done["lent_id"]) == ("finished", left.lent_id)
    now = settled(platform, source)
    assert (now.lent_id, now.lent) == (left.lent_id, 0)
    assert finished(lend_init(sandbox, lend_stacks, "--json", "-y"))["action"] == "exists"

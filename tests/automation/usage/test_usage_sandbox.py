"""`gpufleet usage` over a scripted day in the sandbox: a move each way, a replacement, an idle slot.

The expected GPU-seconds are worked out here, instance by instance, from the script's own timeline:
which instance the script saw start, move, get replaced or leave, with the times the services
stamped (the journal's transitions, the Auto Scaling activities), each checked to fall inside the
moment the script caused it. The report must match them to the second and reconcile to the
reservation.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import pytest

from gpufleet.infra import catalog

pytestmark = pytest.mark.emulator


def cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpufleet.automation", *args], env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def move(fleet, src: str, dst: str) -> tuple[dict, float, float]:
    before = time.time()
    done = cli("rebalance", "--probe", "local", "--from", src, "--to", dst, "--nodes", "1", "--yes", "--json",
               "--inventory", str(fleet.inventory_path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), before, time.time()


def transitions(fleet, op_id: str) -> dict[str, float]:
    ddb = fleet.client(fleet.inventory.platform_stack, "dynamodb")
    items = ddb.query(TableName=fleet.inventory.journal_table, KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
                      ExpressionAttributeValues={":pk": {"S": f"op#{op_id}"}, ":ev": {"S": "ev#"}})["Items"]
    out: dict[str, float] = {}
    for it in sorted(items, key=lambda i: int(i["at_ns"]["N"])):
        if it["event_type"]["S"] == "transition":
            out.setdefault(it["state"]["S"], int(it["at_ns"]["N"]) / 1e9)
    return out


def activities(fleet, ref) -> dict[tuple[str, str], float]:
    """(launch|terminate, instance) -> when, from the group's own activity history."""
    found = fleet.client(ref.stack, "autoscaling").describe_scaling_activities(
        AutoScalingGroupName=ref.group.asg_name)["Activities"]
    out = {}
    for a in found:
        words = a["Description"].split(": ")
        if a["StatusCode"] == "Successful" and len(words) == 2:
            kind = "launch" if words[0].startswith("Launching") else "terminate"
            out[(kind, words[1])] = (a.get("EndTime") if kind == "terminate" else a["StartTime"]).timestamp()
    return out


def test_a_scripted_day_adds_up_to_the_second(fleet):
    inv = fleet.inventory
    t0 = time.time()
    groups = {g.group.name: g for g in inv.node_groups}
    initial = {name: set(fleet.live(g)) for name, g in groups.items()}

    to_inf, a0, a1 = move(fleet, "training", "inference")
    pool = to_inf["plan"]["pool"]
    train = next(g for g in inv.node_groups if g.group.asg_name == to_inf["plan"]["source_asg"])
    infer = next(g for g in inv.node_groups if g.group.asg_name == to_inf["plan"]["dest_asg"])

    # A replacement: an inference node leaves without lowering desired; its group relaunches one.
    b0 = time.time()
    replaced = sorted(fleet.live(infer))[0]
    fleet.client(infer.stack, "autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=replaced, ShouldDecrementDesiredCapacity=False)
    b1 = time.time()

    to_train, c0, c1 = move(fleet, "inference", "training")
    time.sleep(1.0)
    t1 = time.time()

    done = cli("usage", "--since", iso(t0), "--until", iso(t1), "--by", "pool", "--json",
               "--inventory", str(fleet.inventory_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["reconciled"], report["problems"]
    got = {line["class"]: line["gpu_hours"] for line in report["lines"] if line["pool"] == pool}

    # -- by hand ------------------------------------------------------------------------------
    acts = {**activities(fleet, train), **activities(fleet, infer)}
    ops = {}
    for result, lo, hi in ((to_inf, a0, a1), (to_train, c0, c1)):
        at = transitions(fleet, result["op_id"])
        assert all(lo <= t <= hi for t in at.values()), (at, lo, hi)
        ops[result["op_id"]] = (at, {v["instance_id"] for v in result["plan"]["victims"]}, set(result["acquired"]))
    assert len(ops[to_inf["op_id"]][1]) == 1 and len(ops[to_train["op_id"]][2]) == 1
    assert b0 - 0.001 <= acts[("terminate", replaced)] <= b1  # activities are stamped in ms

    role_of = {train.group.asg_name: "training", infer.group.asg_name: "inference"}
    lives = []  # (instance, role, start, end)
    for ref in (train, infer):
        launched = {i for (kind, i), _t in activities(fleet, ref).items() if kind == "launch"}
        for iid in initial[ref.group.name] | launched:
            start = t0 if iid in initial[ref.group.name] else acts[("launch", iid)]
            end = acts.get(("terminate", iid), t1)
            assert t0 <= start <= end <= t1
            lives.append((iid, role_of[ref.group.asg_name], start, end))
    seconds = {"training": 0.0, "inference": 0.0, "moving": 0.0}
    for iid, role, start, end in lives:
        moving = []
        for at, victims, acquired in ops.values():
            if iid in victims:
                moving.append((at["CHECKPOINTING"], at["RELEASED"]))
            if iid in acquired:
                moving.append((at["RELEASED"], at["JOINED"]))
        busy = sum(max(0.0, min(hi, end) - max(lo, start)) for lo, hi in moving)
        seconds["moving"] += busy
        seconds[role] += (end - start) - busy
    slots = inv.pool(pool).count
    seconds["idle"] = slots * (t1 - t0) - sum(seconds.values())
    gpus = catalog.lookup(inv.pool(pool).instance_type).gpus
    want = {k: v * gpus / 3600 for k, v in seconds.items() if v > 0}
    assert set(got) == set(want)
    for klass, value in want.items():
        # "to the second": within one GPU-second of the hand figure (JSON rounds to 1e-6 GPU-hours)
        assert abs(got[klass] - value) * 3600 < 1.0, (klass, got[klass], value)
    assert want["moving"] > 0 and want["idle"] > 0

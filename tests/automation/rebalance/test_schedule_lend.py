"""Lending carried out by the reconciler, against the sandbox with IAM enforced: outside the
window the pass lends inference's idle slots through the interruptible reservation and training's
lent group grows into them; before the window the lent nodes are checkpointed, drained and
terminated first, then the slots are reclaimed, so EC2's warning finds no running lent node, and
inference boots into them before the window opens. `rebalance ls` and the journal show it."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import boto3
import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.plan import load_specs
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.schedule import runner
from gpufleet.automation.schedule.lending import read_allocation
from gpufleet.infra.account_baseline import OPERATOR_ROLE_NAME
from tests.automation.rebalance.test_rebalance_step import DEAD, Killed
from tests.automation.rebalance.test_schedule_deadline import finished, gpufleet, moves
from tests.automation.sandbox.test_capacity import NO_RETRY, asg, asg_name, session_for
from tests.automation.sandbox.test_interruptible import POOL
from tests.automation.sandbox.test_lending import share_with_training

pytestmark = pytest.mark.emulator
LENT_GROUP, LENT_ASG = "train-h100-lent", "train-h100-lent-asg"
WARNING_S = 1.0
"""EC2's 2-minute warning, shortened (the emulator's clock is the wall clock)."""


def settled(ec2, source):
    deadline = time.monotonic() + 30
    while (now := read_allocation(ec2, source)).status == "updating":
        assert time.monotonic() < deadline, "the reclaim never settled"
        time.sleep(0.2)
    return now


def let_operator_scale(iam, group: str) -> None:
    """The operator role's scaling statement names the new group too (as the training stack renders
    it once the lent group is in its stack file: infra/baseline_policies.py)."""
    [name] = iam.list_role_policies(RoleName=OPERATOR_ROLE_NAME)["PolicyNames"]
    policy = iam.get_role_policy(RoleName=OPERATOR_ROLE_NAME, PolicyName=name)["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    [scale] = [s for s in policy["Statement"] if s.get("Sid") == "ScaleNodeGroups"]
    [(key, groups)] = scale["Condition"]["StringEquals"].items()
    scale["Condition"]["StringEquals"][key] = [*([groups] if isinstance(groups, str) else groups), group]
    iam.put_role_policy(RoleName=OPERATOR_ROLE_NAME, PolicyName=name, PolicyDocument=json.dumps(policy))


@pytest.fixture
def lending(sandbox, tmp_path, lend_stacks):
    """The reference fleet with the H100 schedule lending up to 3 slots, and training's lent group
    deployed: the interruptible reservation made once by `schedule lend-init` (kept at zero), shared
    with training, and an Auto Scaling group whose launch template targets it (what the stacks
    deploy for a lent group)."""
    sandbox.client.set_interruption_warning(WARNING_S)
    stacks = lend_stacks
    doc = json.loads(sandbox.inventory.read_text())
    source = next(p for s in doc["stacks"].values() for p in s.get("pools", []) if p["name"] == POOL)["reservationId"]
    platform = boto3.client("ec2", config=NO_RETRY)
    made = finished(gpufleet("schedule", "lend-init", "--json", "-y", "--pool", POOL, "--inventory",
                             str(sandbox.inventory), "--stacks-dir", str(stacks)))
    assert made["action"] == "created"
    lent_id = settled(platform, source).lent_id
    assert lent_id == made["lent_id"]
    share_with_training(sandbox, lent_id)
    training = session_for(sandbox, "training")
    ec2, auto = training.client("ec2", config=NO_RETRY), training.client("autoscaling", config=NO_RETRY)
    own = asg(training, asg_name(sandbox, "training", "train-h100"))
    [version] = ec2.describe_launch_template_versions(LaunchTemplateId=own["LaunchTemplate"]["LaunchTemplateId"],
                                                      Versions=["$Latest"])["LaunchTemplateVersions"]
    data = {**version["LaunchTemplateData"],
            "CapacityReservationSpecification": {"CapacityReservationTarget": {"CapacityReservationId": lent_id}}}
    template = ec2.create_launch_template(LaunchTemplateName=LENT_GROUP, LaunchTemplateData=data)["LaunchTemplate"]
    tags = [{"Key": t["Key"], "Value": LENT_GROUP if t["Value"] == "train-h100" else t["Value"],
             "PropagateAtLaunch": t.get("PropagateAtLaunch", False)} for t in own.get("Tags", [])]
    auto.create_auto_scaling_group(AutoScalingGroupName=LENT_ASG, MinSize=0, MaxSize=3, DesiredCapacity=0,
                                   VPCZoneIdentifier=own["VPCZoneIdentifier"], Tags=tags,
                                   LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"})
    let_operator_scale(training.client("iam"), LENT_GROUP)
    stack = doc["stacks"]["training"]
    group = next(g for g in stack["nodeGroups"] if g["name"] == "train-h100")
    stack["nodeGroups"].append({**group, "name": LENT_GROUP, "asgName": LENT_ASG, "minNodes": 0, "maxNodes": 3,
                                "initialNodes": 0, "lentReservationId": lent_id})
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc))
    try:
        yield {"inventory": path, "stacks": stacks, "source": source, "lent_id": lent_id, "platform": platform}
    finally:
        sandbox.client.set_interruption_warning(120)


def reconcile(lending, at):
    return finished(gpufleet("schedule", "reconcile", "--json", "--inventory", str(lending["inventory"]),
                             "--stacks-dir", str(lending["stacks"]), "--at", at, "--probe", "orchestrator"))


LEND_AT = dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC)
"""A Tuesday evening: the calling window (09:00-15:00 Chicago, 14:00-20:00 UTC) is over."""
WINDOW = dt.datetime(2026, 3, 11, 14, 0, tzinfo=dt.UTC)
"""The next morning's window opens; the reclaim starts 22 minutes before (drain, warning, lead)."""


def minutes(start: dt.datetime, n: int) -> list[str]:
    return [(start + dt.timedelta(minutes=i)).isoformat() for i in range(n)]


def lent_desired(sandbox) -> int:
    auto = session_for(sandbox, "training").client("autoscaling")
    return auto.describe_auto_scaling_groups(AutoScalingGroupNames=[LENT_ASG])["AutoScalingGroups"][0]["DesiredCapacity"]


def lend_notes(journal, findings):
    """The journaled lending steps the findings name (``(ln-...)``)."""
    ids = [f.split("(")[-1].split(")")[0] for f in findings if "lent slots" in f and "(ln-" in f]
    return {op_id: journal.events(op_id) for op_id in ids}


def test_the_pass_lends_outside_the_window_and_reclaims_after_the_checkpoint(fleet, sandbox, lending):
    platform, source = lending["platform"], lending["source"]
    passes = [reconcile(lending, at) for at in minutes(LEND_AT, 3)]
    assert all(p["seconds"] < 60 for p in passes)
    # inference's idle node goes back to the reservation; the slots are lent; training grows into them
    assert moves(passes[0]["started"]) == [("inference", "released", 1, "DONE")], passes[0]
    assert moves(passes[1]["started"]) == [("released", "lent", 2, "DONE")], passes[1]
    assert not passes[2]["started"] and not any("lent slots" in f for f in passes[2]["findings"]), "a pass changes nothing more"
    allocation = read_allocation(platform, source)
    assert (allocation.lent_id, allocation.lent, allocation.used) == (lending["lent_id"], 2, 2)
    assert lent_desired(sandbox) == 2

    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    grown = lend_notes(journal, passes[0]["findings"] + passes[1]["findings"])
    assert len(grown) == 2
    for events in grown.values():  # an intent before the call, its result after, under the lease
        assert [e.event_type for e in events] == ["intent", "result"] and events[0].detail["token"] >= 1
        assert events[1].detail["action"] in {"created", "grown"}
    assert [e.detail["after"] for ev in grown.values() for e in ev if e.event_type == "result"] == [1, 2]

    morning = [reconcile(lending, at) for at in minutes(WINDOW - dt.timedelta(minutes=23), 5)]
    assert all(p["seconds"] < 60 for p in morning)
    assert not morning[0]["started"], "no reclaim before it is due"
    # 13:38: the lent nodes are checkpointed, drained and terminated, then the slots reclaimed
    assert moves(morning[1]["started"]) == [("lent", "released", 2, "DONE")], morning[1]
    assert morning[1]["targets"][0]["reason"].startswith("lend: reclaimed 2")
    [(_, reclaim)] = lend_notes(journal, morning[1]["findings"]).items()
    assert reclaim[-1].detail["action"] == "reclaimed" and reclaim[-1].detail["after"] == 0
    assert not morning[2]["started"] and not lend_notes(journal, morning[2]["findings"])
    assert moves(morning[3]["started"]) == [("released", "inference", 2, "DONE")], morning[3]
    assert moves(morning[4]["started"]) == [("training", "inference", 2, "DONE")], morning[4]
    assert settled(platform, source).lent == 0 and lent_desired(sandbox) == 0
    assert fleet.desired()["serve-h100"] == 5 and fleet.desired()["train-h100"] == 3

    [give_back] = [op for op in journal.list_ops() if op.body["plan"]["from_role"] == "lent"]
    assert give_back.state is MoveState.DONE and give_back.body["lending"] is True
    events = journal.events(give_back.op_id)
    checkpoint = [e for e in events if e.event_type == "result" and e.detail.get("call") == "request_checkpoint"]
    terminated = [e for e in events if e.event_type == "result"
                  and e.detail.get("call") == "TerminateInstanceInAutoScalingGroup"]
    assert len(checkpoint) == 1 and len(terminated) == 2
    # the checkpoint finished and the lent nodes were gone before the reclaim was sent: EC2's
    # warning found no running lent node
    assert max(e.at_ns for e in checkpoint + terminated) < reclaim[0].at_ns
    assert sandbox.client.interruptions() == []

    listing = finished(gpufleet("rebalance", "ls", "--json", "--inventory", str(lending["inventory"])))
    listed = {(m["from_role"], m["to_role"], m["nodes"], m["state"]) for m in listing["moves"]}
    assert {("released", "lent", 2, "DONE"), ("lent", "released", 2, "DONE")} <= listed, listing


class DiesAfterReclaim:
    """A client of a pass killed right after EC2 accepted a reclaim: that call's result is never
    journaled, and no call of the process's clients runs after it (not even a ``finally``'s)."""

    dead = False

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if DiesAfterReclaim.dead:
                raise Killed
            out = attr(*args, **kwargs)
            if name == "update_interruptible_capacity_reservation_allocation" and kwargs["TargetInstanceCount"] == 0:
                DiesAfterReclaim.dead = True
                raise Killed
            return out
        return call


def test_a_pass_killed_after_the_reclaim_call_is_continued_by_the_next(fleet, sandbox, lending):
    for at in minutes(LEND_AT, 2):
        reconcile(lending, at)
    assert read_allocation(lending["platform"], lending["source"]).lent == 2 and lent_desired(sandbox) == 2
    inventory = load_inventory(lending["inventory"])
    real = cached_clients(AwsAccess(inventory, operation="schedule reconcile"))
    dying = runner.make_reconciler(lending["inventory"], load_specs(lending["stacks"]), probe="orchestrator",
                                   clients=lambda inv: (lambda stack, service: DiesAfterReclaim(real(stack, service))))
    dying.owner = DEAD.format(host=socket.gethostname())
    with pytest.raises(Killed):
        dying.once(WINDOW - dt.timedelta(minutes=22))  # gives the lent nodes back, then reclaims
    DiesAfterReclaim.dead = False
    assert lent_desired(sandbox) == 0 and settled(lending["platform"], lending["source"]).lent == 0
    journal = Journal(fleet.client("platform", "dynamodb"), inventory.journal_table)
    holder = dying.executor().leases.holder(POOL)
    assert holder.kind == "lend" and holder.owner == dying.owner  # left by the dead pass
    [events] = [journal.events(holder.op_id)]
    assert [e.event_type for e in events] == ["intent"], "the journal says only what it knows: the intent"
    # the next pass takes the dead pass's lease, finds the slots reclaimed and goes on
    after = reconcile(lending, (WINDOW - dt.timedelta(minutes=20)).isoformat())
    [(_, redone)] = lend_notes(journal, after["findings"]).items()
    assert redone[-1].detail["action"] == "held" and redone[-1].detail["after"] == 0
    assert moves(after["started"]) == [("released", "inference", 2, "DONE")], after
    assert settled(lending["platform"], lending["source"]).lent == 0
    assert sandbox.client.interruptions() == []


def test_two_passes_at_once_lend_once(fleet, sandbox, lending):
    reconcile(lending, LEND_AT.isoformat())
    at = (LEND_AT + dt.timedelta(minutes=1)).isoformat()
    procs = [gpufleet("schedule", "reconcile", "--json", "--inventory", str(lending["inventory"]), "--stacks-dir",
                      str(lending["stacks"]), "--at", at, "--probe", "orchestrator") for _ in range(2)]
    results = [finished(p) for p in procs]
    acted = [moves([m])[0] for r in results for m in r["started"] if m["state"] == "DONE"]
    assert acted == [("released", "lent", 2, "DONE")], results
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table)
    steps = lend_notes(journal, [f for r in results for f in r["findings"]])
    assert [e.detail["after"] for ev in steps.values() for e in ev if e.event_type == "result"] == [2], results
    allocation = read_allocation(lending["platform"], lending["source"])
    assert (allocation.lent, allocation.used) == (2, 2) and lent_desired(sandbox) == 2

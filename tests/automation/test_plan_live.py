"""`gpufleet plan --live`: the live fleet (read as `gpufleet status` reads it) against the stack files.

Bounds, pools and pool counts that differ are drift; a group's live size differing from its
initialNodes is not (the rebalancer owns it), and says so.
"""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.inventory import load_inventory
from tests.automation.sandbox.deployer import DeployerAccess

runner = CliRunner()


def plan_live(sandbox, *args: str, stacks_dir=None):
    return runner.invoke(app, ["plan", "--live", "--inventory", str(sandbox.inventory), "--stacks-dir",
                               str(stacks_dir or sandbox.stacks_dir), *args], env={"COLUMNS": "250"})


def differences(result) -> list[tuple]:
    assert result.exit_code == 0, result.output
    live = json.loads(result.stdout)["live"]
    assert live["drift"] == sum(1 for d in live["differences"] if d["drift"])
    return sorted((d["stack"], d["resource"], d["field"], d["declared"], d["live"], d["drift"]) for d in live["differences"])


def test_a_fleet_as_deployed_has_not_drifted(sandbox):
    result = plan_live(sandbox, "--json")
    assert differences(result) == []
    assert json.loads(result.stdout)["live"]["inventory"]["stale"] == []


def test_bounds_and_counts_are_drift_the_live_size_is_not(sandbox):
    inventory = load_inventory(sandbox.inventory)
    access = DeployerAccess(sandbox)  # changed out of band, by an administrator
    serve = inventory.groups_of("inference")[0].group.asg_name
    train = next(g.group.asg_name for g in inventory.groups_of("training") if g.group.name == "train-h100")
    access.client("inference", "autoscaling").set_desired_capacity(AutoScalingGroupName=serve, DesiredCapacity=3)
    access.client("training", "autoscaling").update_auto_scaling_group(AutoScalingGroupName=train, MaxSize=6)
    access.client("platform", "ec2").modify_capacity_reservation(
        CapacityReservationId=inventory.pool("h200-use1-az6").reservation_id, InstanceCount=6)
    as_json = plan_live(sandbox, "--json")
    assert differences(as_json) == [
        ("inference", "serve-h100", "size", 2, 3, False),
        ("platform", "h200-use1-az6", "count", 4, 6, True),
        ("training", "train-h100", "max_nodes", 8, 6, True),
    ]
    # The text at 80 columns: a line per difference naming it whole, its message folded at spaces under it.
    at_80 = runner.invoke(app, ["plan", "--live", "--inventory", str(sandbox.inventory), "--stacks-dir",
                                str(sandbox.stacks_dir)], env={"COLUMNS": "80"})
    assert at_80.exit_code == 0, at_80.output
    lines = at_80.stdout.splitlines()
    assert "2 drifted from the stack files" in " ".join(" ".join(lines).split())
    assert "the rebalancer owns the live size (not drift)" in " ".join(" ".join(lines).split())
    assert max(len(line.rstrip()) for line in lines) <= 80 and "…" not in at_80.stdout, at_80.stdout
    for d in json.loads(as_json.stdout)["live"]["differences"]:
        head = next(n for n, line in enumerate(lines) if f"{d['stack']}/{d['resource']}  {d['field']}:" in line)
        assert lines[head].split()[0] == ("drift" if d["drift"] else "not")
        under = []
        for line in lines[head + 1:]:
            if not line.startswith("  "):
                break
            under.append(line.strip())
        assert " ".join(under) == d["message"], lines[head:]


def test_a_group_deployed_but_no_longer_declared_is_drift(sandbox, tmp_path):
    stacks = tmp_path / "stacks"
    shutil.copytree(sandbox.stacks_dir, stacks)
    path = stacks / "Pulumi.training.yaml"
    text = path.read_text()
    cut = text.index("    - name: train-h200")
    path.write_text(text[:cut] + text[text.index("  gpufleet:storage:"):])
    assert differences(plan_live(sandbox, "--json", stacks_dir=stacks)) == [
        ("training", "train-h200", "exists", None, "train-h200", True)]


def test_a_bad_inventory_exits_2_before_rendering(sandbox, tmp_path):
    result = runner.invoke(app, ["plan", "--live", "--inventory", str(tmp_path / "none.json"),
                                 "--stacks-dir", str(sandbox.stacks_dir)])
    assert result.exit_code == 2 and "no inventory" in result.stderr
    assert sandbox.requests() == []

"""`gpufleet health` on the emulated fleet: nodes from the groups' InService instances, checks through
the local probe (each node's devices given at the boundary), --replace through Auto Scaling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.health.probe import LocalProbe, SsmProbe
from gpufleet.automation.health.replace import HealthArgs, find_targets, run_health
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import CONTROL_FLOW
from gpufleet.lifecycle.health.results import Tier
from tests.conftest import REPO
from tests.lifecycle.health.fixture_runner import fake_tools


def clients_of(inventory):
    access = AwsAccess(inventory, operation="health-test")
    return lambda stack, service: access.client(stack, service, passthrough=CONTROL_FLOW if service == "dynamodb" else ())


def test_replace_terminates_the_failed_node_and_checks_its_replacement(sandbox, tmp_path):
    inventory = load_inventory(sandbox.inventory)
    clients = clients_of(inventory)
    ref = inventory.groups_of("training")[0]
    group = ref.group
    targets = find_targets(inventory, clients, group.pool)
    assert targets, "the applied training group has InService instances"
    bad = next(t for t in targets if t.group == group.name).instance_id
    desired_before = clients(ref.stack, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group.asg_name])["AutoScalingGroups"][0]["DesiredCapacity"]

    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp_path / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    env = {"GPUFLEET_INSTANCE_TYPE": group.instance_type}
    probe = LocalProbe(env={**env, "PATH": f"{healthy}:{os.environ['PATH']}"},
                       env_by_node={bad: {"PATH": f"{dbe}:{os.environ['PATH']}"}}, timeout_s=120)
    messages: list[str] = []
    run = run_health(HealthArgs(pool=group.pool, tiers=(Tier.QUICK,), replace=True, probe="local",
                                inventory=sandbox.inventory, replace_timeout_s=60),
                     clients=clients, probes=lambda stack: probe, progress=messages.append)

    assert list(run.report.failed) == [bad] and run.report.failed[bad][0].startswith("ecc: ")
    (replacement,) = run.replacements
    assert replacement.instance_id == bad and len(replacement.replaced_by) == 1
    assert run.recheck is not None and run.recheck.passed == replacement.replaced_by and run.ok
    calls = [r for r in sandbox.requests() if r["action"] == "TerminateInstanceInAutoScalingGroup"]
    assert len(calls) == 1 and calls[0]["status"] == 200
    after = clients(ref.stack, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group.asg_name])["AutoScalingGroups"][0]
    assert after["DesiredCapacity"] == desired_before
    assert bad not in {i["InstanceId"] for i in after["Instances"]}
    assert messages.index(f"none: drained {bad} before replacement") < messages.index(
        next(m for m in messages if m.startswith(f"{bad}: terminated")))


def cli(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpufleet.automation", "health", "--inventory", str(sandbox.inventory), *args],
                          capture_output=True, text=True, env={**os.environ, **sandbox.env}, cwd=REPO, timeout=300)


def test_cli_checks_every_node_of_a_pool_as_json(sandbox):
    inventory = load_inventory(sandbox.inventory)
    pool = inventory.groups_of("training")[0].group.pool
    done = cli(sandbox, "--pool", pool, "--tiers", "quick", "--probe", "local", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    ids = {t["node"] for t in doc["targets"]}
    assert ids and set(doc["report"]["passed"]) == ids and doc["ok"] is True
    assert {t["node_group"]["pool"] for t in doc["targets"]} == {pool}
    node = doc["report"]["nodes"][0]["report"]
    assert node["tiers"] == ["quick"] and any(r["check"] == "memory_headroom" for r in node["results"])


def test_cli_ssm_into_the_phi_stack_exits_2_before_any_aws_call(sandbox):
    sandbox.reset_log()
    done = cli(sandbox, "--tiers", "quick", "--probe", "ssm")
    assert done.returncode == 2 and "stack inference holds PHI" in done.stderr and "Traceback" not in done.stderr
    assert sandbox.requests() == []


def test_cli_bad_pool_exits_2_before_any_aws_call(sandbox):
    sandbox.reset_log()
    done = cli(sandbox, "--pool", "no-such-pool", "--tiers", "quick", "--probe", "local")
    assert done.returncode == 2 and "--pool 'no-such-pool'" in done.stderr and "Traceback" not in done.stderr
    assert sandbox.requests() == []


def test_ssm_probe_sends_the_entry_point_and_fails_a_node_without_a_report(sandbox):
    inventory = load_inventory(sandbox.inventory)
    ref = inventory.groups_of("training")[0]
    target = find_targets(inventory, clients_of(inventory), ref.group.pool)[0]
    access = AwsAccess(inventory, operation="health-test")
    probe = SsmProbe(access.session(ref.stack), region=inventory.stacks[ref.stack].region, poll_s=0.1,
                     timeout_s=30)
    report = probe.probe(target.instance_id, (Tier.QUICK, Tier.PERFORMANCE))
    sent = [r for r in sandbox.requests() if r["action"] == "SendCommand"]
    assert len(sent) == 1
    # The emulator runs no commands: empty output, which must fail the node, never pass it.
    (result,) = report.results
    assert result.check == "probe" and result.status.value == "FAIL" and "no report" in result.detail
    # The bundle is importable as gpufleet.lifecycle only with the install directory on PYTHONPATH.
    assert probe.command(target.instance_id, (Tier.QUICK, Tier.PERFORMANCE)) == (
        "PYTHONPATH=/opt/gpufleet /opt/gpufleet/venv/bin/python3 -m gpufleet.lifecycle.health "
        f"--tiers quick,performance --json --brief --node {target.instance_id}")

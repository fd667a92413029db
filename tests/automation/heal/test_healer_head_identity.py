"""The healer on a Slurm head, as its instance role, under the sandbox's IAM enforcement.

The sandbox hands out the head role's credentials as EC2 does (a session of the instance's role,
named by the instance id, issued by STS; here STS of the sandbox, asked by the deployer). With them
a heal pass with the sessions of ``--identity instance`` (automation/aws.py) replaces a node on
the real local Slurm: the training head's pass succeeds with no denial; the inference head's
(even with a policy naming the journal role) is refused the journal role by its trust.
"""

from __future__ import annotations

import json

import boto3
import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.service import HealArgs, heal_ops, heal_pass
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.infra import baseline_policies as policies
from gpufleet.infra.errors import AwsCallError, BadInputError
from tests.automation.heal.test_heal_slurm import Fleet
from tests.automation.sandbox.deployer import DeployerAccess

pytestmark = [pytest.mark.emulator, pytest.mark.slurm]

JOURNAL_ROLE = "arn:aws:iam::{}:role/" + policies.HEALER_JOURNAL_ROLE_NAME


def instance_session(sandbox, stack: str, instance_id: str = "i-0head") -> boto3.Session:
    """The credentials the head's instance metadata would serve: a session of its instance role."""
    account = load_inventory(sandbox.inventory).stacks[stack]
    creds = DeployerAccess(sandbox).client(stack, "sts").assume_role(
        RoleArn=policies.role_arn("aws", account.account_id, policies.HEAD_ROLE_NAME),
        RoleSessionName=instance_id)["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=account.region)


def head_pass(sandbox, fleet: Fleet, stack: str):
    """One heal pass as ``stack``'s head: the instance identity's sessions, held to its own stack."""
    access = AwsAccess(load_inventory(sandbox.inventory), operation="heal", identity="instance",
                       base_session=instance_session(sandbox, stack))
    args = HealArgs(inventory=sandbox.inventory, probe="local", stacks=(access.own_stack(),),
                    budget=HealBudget(per_group_per_hour=1, per_pool_per_hour=2),
                    # No slurmd runs for the sandbox's newcomers here (test_heal_slurm.Fleet): gate at once.
                    limits=Limits(drain_timeout_s=60, replace_timeout_s=60, reboot_timeout_s=5, poll_s=0.5,
                                  join_timeout_s=0))
    assert args.stacks == (stack,)
    return heal_pass(args, clients=cached_clients(access), slurm=fleet.slurm, probes=lambda _stack: fleet.probe)


def denials(sandbox) -> list[dict]:
    return sandbox.client.iam()["denials"]


def test_the_training_heads_pass_replaces_a_node_with_no_denial(sandbox, local_slurm, tmp_path):
    fleet = Fleet(sandbox, local_slurm, tmp_path)
    fleet.drain("node1", "gpufleet replace")
    sandbox.reset_log()
    report = head_pass(sandbox, fleet, "training")
    assert denials(sandbox) == []
    (op,) = report.operations
    assert (op["node"], op["action"], op["state"]) == ("node1", "replace", "DONE"), report
    assert [o.state for o in heal_ops(fleet.journal)] == [MoveState.DONE]
    assert len(fleet.terminations(sandbox)) == 1


def test_the_inference_heads_pass_is_refused_the_journal_role(sandbox, local_slurm, tmp_path):
    fleet = Fleet(sandbox, local_slurm, tmp_path)
    inventory = load_inventory(sandbox.inventory)
    inference, platform = inventory.stacks["inference"], inventory.platform
    journal_role = JOURNAL_ROLE.format(platform.account_id)
    # A Slurm head in the inference account, its policy naming the journal role too (the worst
    # case: only the journal role's trust stands between it and the journal).
    iam = DeployerAccess(sandbox).client("inference", "iam")
    iam.create_role(RoleName=policies.HEAD_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(policies.document([{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}])))
    iam.put_role_policy(RoleName=policies.HEAD_ROLE_NAME, PolicyName="healer", PolicyDocument=json.dumps(
        policies.head_permissions([inference.operator_role_arn, journal_role])))
    sandbox.reset_log()
    with pytest.raises(AwsCallError, match="AccessDenied") as refused:
        head_pass(sandbox, fleet, "inference")
    assert policies.HEALER_JOURNAL_ROLE_NAME in str(refused.value), refused.value
    [denied] = denials(sandbox)
    assert denied["iam_action"] == "sts:AssumeRole" and journal_role in json.dumps(denied), denied
    assert heal_ops(fleet.journal) == []


def test_a_head_reaches_only_its_own_stack_and_the_journal(sandbox):
    access = AwsAccess(load_inventory(sandbox.inventory), operation="heal", identity="instance",
                       base_session=instance_session(sandbox, "training"))
    assert access.own_stack() == "training"
    with pytest.raises(BadInputError, match="reaches only its own stack, not 'inference'"):
        access.session("inference")
    arn = access.client("platform", "sts").get_caller_identity()["Arn"]
    assert f":assumed-role/{policies.HEALER_JOURNAL_ROLE_NAME}/" in arn
    arn = access.client("training", "sts").get_caller_identity()["Arn"]
    assert ":assumed-role/gpufleet-operator/" in arn


def test_the_service_refuses_what_the_heads_roles_cannot_do_before_any_call(sandbox, capsys):
    from gpufleet.automation.heal.__main__ import main

    sandbox.reset_log()
    base = ["--inventory", str(sandbox.inventory), "--identity", "instance"]
    assert main([*base, "--sources", "ec2,prometheus"]) == 2
    assert "may not query the Managed Prometheus" in capsys.readouterr().err
    assert main([*base, "--orchestrator", "eks"]) == 2
    assert sandbox.requests() == []


HEAD_POLICIES = [("platform", policies.HEALER_JOURNAL_ROLE_NAME, "policy"),
                 ("training", policies.HEAD_ROLE_NAME, "policy"),
                 ("platform", policies.HEALER_JOURNAL_ROLE_NAME, "trust"),
                 ("training", "gpufleet-operator", "trust")]
"""(stack, role, kind) of each document the head's identity added to (kind: its healer's inline
policy, or its trust policy); tests/automation/sandbox/test_iam_enforced.py proves the rest."""


EC2_ONLY = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}


def head_workflow(sandbox) -> list[dict]:
    """What every heal pass of the head does first, cheaply: read the journal (ops and leases:
    Scan) as the journal role, and its group as the operator role. The denials it met."""
    from gpufleet.automation.rebalance.journal import Journal

    sandbox.reset_log()
    inventory = load_inventory(sandbox.inventory)
    access = AwsAccess(inventory, operation="heal", identity="instance",
                       base_session=instance_session(sandbox, "training"))
    try:
        Journal(access.client("platform", "dynamodb", passthrough=()), inventory.journal_table).list_ops()
        group = next(g for g in inventory.groups_of("training") if g.group.orchestrator == "slurm").group
        access.client("training", "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group.asg_name])
    except AwsCallError as error:
        assert denials(sandbox), error
    return denials(sandbox)


def healer_policy(iam, role: str, kind: str) -> tuple[str, dict]:
    if kind == "trust":
        return "", iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    [name] = [n for n in names if "healer" in n] if role == policies.HEAD_ROLE_NAME else names
    return name, iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]


def test_each_statement_of_the_heads_identity_is_needed(sandbox):
    assert head_workflow(sandbox) == []
    needed_by, unneeded, new_ones = {}, [], 0
    for stack, role, kind in HEAD_POLICIES:
        iam = DeployerAccess(sandbox).client(stack, "iam")
        name, document = healer_policy(iam, role, kind)
        for index, statement in enumerate(document["Statement"]):
            label = f"{stack}/{role}/{kind}/{statement.get('Sid') or index}"
            if kind == "trust" and statement.get("Sid") == "PlatformAutomation":
                continue  # the automation's own statement: test_iam_enforced.py
            new_ones += 1
            sandbox.restore()
            iam = DeployerAccess(sandbox).client(stack, "iam")  # a restore ends the deployer's sessions too
            mutated = json.loads(json.dumps(document))
            del mutated["Statement"][index]
            if kind == "trust":
                # IAM refuses an empty trust: a lone statement gives way to EC2's, which no caller here is.
                mutated["Statement"] = mutated["Statement"] or [EC2_ONLY]
                iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(mutated))
            elif mutated["Statement"]:
                iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(mutated))
            else:
                iam.delete_role_policy(RoleName=role, PolicyName=name)
            found = head_workflow(sandbox)
            if found:
                needed_by[label] = f"{found[0]['service']} {found[0]['action']} denied {found[0]['iam_action']}"
            else:
                unneeded.append(label)
    sandbox.restore()
    report = "\n".join(f"{k} <- {v}" for k, v in needed_by.items())
    print(f"head identity mutation: {len(needed_by)} statements, each needed\n{report}")
    assert unneeded == [], f"statements the head's healer does not need: {unneeded}\n{report}"
    assert new_ones == len(needed_by) == 5, report

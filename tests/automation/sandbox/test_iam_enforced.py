"""The automation's workflows under the rendered IAM policies, in the sandbox with IAM enforced.

Every workflow enters the accounts as in production: the operator's IAM user in the platform
account -> the platform's automation role -> each consumer's operator role (with its external id).
The statement-mutation test removes each statement of each rendered policy the automation uses, in
turn, and runs the workflows until one is denied: a statement no workflow needs fails the test.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.health.probe import LocalProbe, SsmProbe
from gpufleet.automation.health.replace import HealthArgs, find_targets, run_health
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import RebalanceArgs, rebalance
from gpufleet.automation.rebalance.state import MoveState
from gpufleet.automation.sandbox.control import OPERATOR_USER
from gpufleet.automation.schedule.lending import lend_step
from gpufleet.automation.status import fleet_status
from gpufleet.infra.errors import GpufleetError
from gpufleet.lifecycle.health.results import Tier
from tests.automation.sandbox.deployer import DeployerAccess
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = pytest.mark.emulator

POLICIES = [("platform", "gpufleet-automation"), ("training", "gpufleet-operator"), ("inference", "gpufleet-operator")]
"""(stack, role) of every rendered policy the automation's sessions hold."""


def deployer(sandbox, stack: str, service: str):
    """A client in the stack's account as the deployer (unrestricted), to read and change IAM."""
    return DeployerAccess(sandbox).client(stack, service)


def inline_policy(sandbox, stack: str, role: str) -> tuple[str, dict]:
    iam = deployer(sandbox, stack, "iam")
    [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    return name, iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]


def rendered_policy(sandbox, stack: str, role: str) -> dict:
    """The inline policy the program rendered for ``role`` in ``stack``."""
    rendered = next(r for r in sandbox.rendered if r.spec.name == stack)
    suffix = "-automation-policy" if role == "gpufleet-automation" else "-operator-scale-drain"
    [policy] = [r for r in rendered.resources if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name.endswith(suffix)]
    return json.loads(policy.inputs["policy"])


# ---- the workflows (docs/sandbox.md, docs/rebalance.md, docs/health.md) --------------------------


def wf_status(sandbox, tmp: Path) -> None:
    inventory = load_inventory(sandbox.inventory)
    fleet_status(inventory, AwsAccess(inventory, operation="status"))


def wf_ssm_probe(sandbox, tmp: Path) -> None:
    inventory = load_inventory(sandbox.inventory)
    access = AwsAccess(inventory, operation="health")
    ref = inventory.groups_of("training")[0]
    target = find_targets(inventory, lambda s, v: access.client(s, v), ref.group.pool)[0]
    SsmProbe(access.session(ref.stack), region=inventory.stacks[ref.stack].region, poll_s=0.05,
             timeout_s=10).probe(target.instance_id, (Tier.QUICK,))


def wf_lend(sandbox, tmp: Path) -> None:
    """The scheduler's lending step: lend the pool's unused slots (create, kept at zero: update)."""
    inventory = load_inventory(sandbox.inventory)
    source = inventory.pool(inventory.groups_of("training")[0].group.pool).reservation_id
    deployer(sandbox, "platform", "ec2").modify_capacity_reservation(CapacityReservationId=source, InstanceCount=10)
    step = lend_step(AwsAccess(inventory, operation="lend").client("platform", "ec2"), source, 2, training=0)
    assert step.action == "created", step


def move(sandbox, source: str, dest: str, **extra) -> None:
    rebalance(RebalanceArgs(from_role=source, to_role=dest, nodes=1, execute=True, probe="local",
                            inventory=sandbox.inventory, **extra))


def wf_to_inference(sandbox, tmp: Path) -> None:
    move(sandbox, "training", "inference")


def wf_to_training(sandbox, tmp: Path) -> None:
    move(sandbox, "inference", "training")


def stuck_move(sandbox) -> str:
    """A move left in ROLLING_BACK (every SetDesiredCapacity failing), the fault then cleared."""
    sandbox.inject_fault("autoscaling", "SetDesiredCapacity", "InternalError", count=1000)
    with pytest.raises(GpufleetError):
        move(sandbox, "training", "inference")
    sandbox.client.clear_faults()
    inventory = load_inventory(sandbox.inventory)
    journal = Journal(deployer(sandbox, "platform", "dynamodb"), inventory.journal_table)
    [op] = journal.list_ops(in_flight_only=True)
    return op.op_id


def wf_resume(sandbox, tmp: Path) -> None:
    op_id = stuck_move(sandbox)
    with pytest.raises(GpufleetError, match="rolled back"):
        rebalance(RebalanceArgs(resume=op_id, probe="local", inventory=sandbox.inventory))
    journal = Journal(deployer(sandbox, "platform", "dynamodb"), load_inventory(sandbox.inventory).journal_table)
    assert journal.load(op_id).state is MoveState.ROLLED_BACK


def wf_cancel(sandbox, tmp: Path) -> None:
    op_id = stuck_move(sandbox)
    try:
        rebalance(RebalanceArgs(cancel=op_id, inventory=sandbox.inventory))
    except GpufleetError as error:  # a cancelled move ends ROLLED_BACK, reported as an error
        if "AccessDenied" in str(error):
            raise


def wf_health_replace(sandbox, tmp: Path) -> None:
    inventory = load_inventory(sandbox.inventory)
    access = AwsAccess(inventory, operation="health")
    clients = lambda s, v: access.client(s, v)  # noqa: E731
    group = inventory.groups_of("training")[0].group
    bad = find_targets(inventory, clients, group.pool)[0].instance_id
    healthy = fake_tools(tmp / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": group.instance_type, "PATH": f"{healthy}:{os.environ['PATH']}"},
                       env_by_node={bad: {"PATH": f"{dbe}:{os.environ['PATH']}"}}, timeout_s=120)
    run = run_health(HealthArgs(pool=group.pool, tiers=(Tier.QUICK,), replace=True, probe="local",
                                inventory=sandbox.inventory, replace_timeout_s=60),
                     clients=clients, probes=lambda stack: probe)
    assert run.replacements and run.replacements[0].instance_id == bad


WORKFLOWS: dict[str, Callable[..., None]] = {
    "status": wf_status, "schedule lend": wf_lend, "health --probe ssm": wf_ssm_probe, "rebalance training->inference": wf_to_inference,
    "rebalance inference->training": wf_to_training, "health --replace": wf_health_replace,
    "rebalance --resume": wf_resume, "rebalance --cancel": wf_cancel,
}
"""Cheapest first: a mutated statement stops at the first workflow it breaks."""


def run_workflow(sandbox, name: str, tmp: Path) -> list[dict]:
    """The requests IAM denied while ``name`` ran (its own errors, if not caused by a denial, raise)."""
    sandbox.reset_log()
    try:
        WORKFLOWS[name](sandbox, tmp)
    except Exception as error:  # noqa: BLE001 - a denial may surface anywhere; anything else re-raised
        denials = sandbox.client.iam()["denials"]
        if not denials:
            raise AssertionError(f"{name} failed without an AccessDenied: {error}") from error
        return denials
    return sandbox.client.iam()["denials"]


@pytest.fixture
def as_operator(sandbox, monkeypatch):
    """The environment `gpufleet sandbox env` gives: the operator's own credentials."""
    for name, value in sandbox.operator_env.items():
        monkeypatch.setenv(name, value)
    return sandbox


def test_the_automation_enters_through_the_production_chain(as_operator):
    sandbox = as_operator
    inventory = load_inventory(sandbox.inventory)
    assert sandbox.client.iam()["enforce"] is True
    access = AwsAccess(inventory, operation="chain-test")
    operator = access.base_session().client("sts").get_caller_identity()["Arn"]
    assert operator == f"arn:aws:iam::{inventory.platform.account_id}:user/{OPERATOR_USER}"
    platform = access.client("platform", "sts").get_caller_identity()["Arn"]
    assert platform.startswith(f"arn:aws:sts::{inventory.platform.account_id}:assumed-role/gpufleet-automation/")
    for stack in ("training", "inference"):
        arn = access.client(stack, "sts").get_caller_identity()["Arn"]
        assert arn.startswith(f"arn:aws:sts::{inventory.stacks[stack].account_id}:assumed-role/gpufleet-operator/")
    # The operator's own principal may do nothing but assume the automation role ...
    ec2 = access.base_session().client("ec2")
    with pytest.raises(Exception, match="UnauthorizedOperation"):
        ec2.describe_capacity_reservations()
    # ... and an operator role trusts only the automation role, with its external id.
    training = inventory.stacks["training"]
    sts = access.base_session().client("sts")
    with pytest.raises(Exception, match="AccessDenied"):
        sts.assume_role(RoleArn=training.operator_role_arn, RoleSessionName="direct", ExternalId=training.external_id)
    via_automation = access.session("platform").client("sts")
    with pytest.raises(Exception, match="AccessDenied"):
        via_automation.assume_role(RoleArn=training.operator_role_arn, RoleSessionName="wrong-id", ExternalId="nope")
    # The policies the sandbox enforces are the rendered ones, byte for byte.
    for stack, role in POLICIES:
        assert inline_policy(sandbox, stack, role)[1] == rendered_policy(sandbox, stack, role), (stack, role)


def test_every_workflow_passes_under_the_rendered_policies(as_operator, tmp_path):
    sandbox = as_operator
    for name in WORKFLOWS:
        sandbox.restore()
        assert run_workflow(sandbox, name, tmp_path / name.replace(" ", "_")) == [], name


PROVEN_BY_EVALUATION = {
    # The sandbox has no Managed Prometheus query endpoint (moto has none), so no workflow here can
    # be denied aps:QueryMetrics; the statement is proven by policy evaluation instead.
    "platform/gpufleet-automation/QueryUsage":
        "tests/automation/sandbox/test_iam_eval.py::test_usage_queries_only_the_platforms_workspaces",
}
"""Statements no sandbox workflow can exercise, and the evaluation test that proves each one."""


def test_each_statement_is_needed_by_some_workflow(as_operator, tmp_path):
    sandbox = as_operator
    began = time.monotonic()
    needed_by: dict[str, str] = {}
    unneeded: list[str] = []
    statements = {(stack, role): inline_policy(sandbox, stack, role) for stack, role in POLICIES}
    for (stack, role), (name, document) in statements.items():
        for index, statement in enumerate(document["Statement"]):
            label = f"{stack}/{role}/{statement.get('Sid') or index}"
            if label in PROVEN_BY_EVALUATION:
                continue
            for workflow in WORKFLOWS:
                sandbox.restore()
                mutated = copy.deepcopy(document)
                del mutated["Statement"][index]
                deployer(sandbox, stack, "iam").put_role_policy(RoleName=role, PolicyName=name,
                                                                PolicyDocument=json.dumps(mutated))
                denials = run_workflow(sandbox, workflow, tmp_path / f"{len(needed_by)}-{workflow.replace(' ', '_')}")
                if denials:
                    first = denials[0]
                    needed_by[label] = f"{workflow}: {first['service']} {first['action']} denied {first['iam_action']}"
                    break
            else:
                unneeded.append(label)
    report = "\n".join(f"{k} <- {v}" for k, v in needed_by.items())
    print(f"statement mutation: {len(needed_by)} statements, each needed, {time.monotonic() - began:.1f} s\n{report}")
    assert unneeded == [], f"statements no workflow needs (remove them): {unneeded}\nneeded:\n{report}"
    assert len(needed_by) + len(PROVEN_BY_EVALUATION) == sum(len(d["Statement"]) for _, d in statements.values())

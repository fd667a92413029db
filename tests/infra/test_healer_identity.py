"""The Slurm head's identity for its healer: the head role may assume its own account's operator
role (which trusts it by aws:PrincipalArn) and, in a training account, the platform's healer
journal role (trusting the training heads only, limited to the journal table and its key).
Trusts are evaluated with the sandbox's IAM evaluator, the one the sandbox enforces."""

from __future__ import annotations

import json

from gpufleet.automation.sandbox.iam_eval import Request, evaluate
from gpufleet.infra import baseline_policies as policies
from gpufleet.infra.slurm_composition import healer_roles
from tests.infra.test_account_baseline import (
    INFERENCE,
    PLATFORM,
    TRAINING,
    consumer,
    inputs_of,
    platform,
)

TRAINING_HEAD = f"arn:aws:iam::{TRAINING}:role/gpufleet-slurm-head"
INFERENCE_HEAD = f"arn:aws:iam::{INFERENCE}:role/gpufleet-slurm-head"


def session_of(role_arn: str) -> str:
    account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/i-0head"


def trusts(document: dict, role_arn: str, role: str, external_id: str | None = None) -> bool:
    context = {"aws:PrincipalArn": role_arn, **({"sts:ExternalId": external_id} if external_id else {})}
    return evaluate([document], Request(action="sts:AssumeRole", resource=role, context=context,
                                        principal=session_of(role_arn)), trust=True).allowed


def test_operator_role_of_a_slurm_stack_trusts_its_own_head_without_an_external_id(mock_runtime):
    baseline = consumer(slurm_head=True)
    external_id = mock_runtime.settle(baseline.external_id)
    [role] = inputs_of(mock_runtime, "aws:iam/role:Role", "operator")
    trust = json.loads(role["assumeRolePolicy"])
    operator = f"arn:aws:iam::{TRAINING}:role/gpufleet-operator"
    assert [s["Sid"] for s in trust["Statement"]] == ["PlatformAutomation", "SlurmHeadHealer"]
    assert trusts(trust, TRAINING_HEAD, operator)
    # Another account's head, or another role of this account, is not trusted.
    assert not trusts(trust, INFERENCE_HEAD, operator)
    assert not trusts(trust, f"arn:aws:iam::{TRAINING}:role/slurm-node-1234", operator)
    # The automation still needs its external id.
    automation = f"arn:aws:iam::{PLATFORM}:role/gpufleet-automation"
    assert trusts(trust, automation, operator, external_id) and not trusts(trust, automation, operator, "nope")


def test_operator_role_without_slurm_trusts_no_head(mock_runtime):
    mock_runtime.settle(consumer().operator_role_arn)
    [role] = inputs_of(mock_runtime, "aws:iam/role:Role", "operator")
    assert not trusts(json.loads(role["assumeRolePolicy"]), TRAINING_HEAD, "arn:aws:iam::x:role/gpufleet-operator")


def test_healer_journal_role_trusts_training_heads_only_and_holds_only_the_journal(mock_runtime):
    baseline = platform()
    assert mock_runtime.settle(baseline.healer_journal_role_arn).endswith(":role/gpufleet-healer-journal")
    [role] = inputs_of(mock_runtime, "aws:iam/role:Role", "healer-journal")
    trust = json.loads(role["assumeRolePolicy"])
    journal_role = f"arn:aws:iam::{PLATFORM}:role/gpufleet-healer-journal"
    assert trusts(trust, TRAINING_HEAD, journal_role)
    assert not trusts(trust, INFERENCE_HEAD, journal_role)  # the PHI account's head: never
    assert INFERENCE not in role["assumeRolePolicy"]
    [policy] = inputs_of(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "healer-journal")
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    assert set(statements) == {"Journal", "JournalKey"}
    table = f"arn:aws:dynamodb:us-east-1:{PLATFORM}:table/gpufleet-rebalance-journal"
    assert statements["Journal"]["Resource"] == table
    assert all(a.endswith("Item") or a in ("dynamodb:Query", "dynamodb:Scan")
               for a in statements["Journal"]["Action"])
    assert statements["JournalKey"]["Condition"] == {"StringEquals": {"kms:ViaService": "dynamodb.us-east-1.amazonaws.com"}}


def test_no_training_account_no_healer_journal_role(mock_runtime):
    from gpufleet.infra.model import Role

    baseline = platform(consumer_accounts={Role.INFERENCE: INFERENCE})
    mock_runtime.settle(baseline.automation_role_arn)
    assert baseline.healer_journal_role_arn is None
    assert inputs_of(mock_runtime, "aws:iam/role:Role", "healer-journal") == []


def test_head_role_has_its_fixed_name_and_may_assume_what_its_healer_needs(rendered_fleet):
    training = rendered_fleet["training"]
    [head] = [r for r in training.of_type("aws:iam/role:Role") if r.name == "slurm-head"]
    assert head.inputs["name"] == policies.HEAD_ROLE_NAME
    [policy] = [r for r in training.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "slurm-head-healer"]
    [statement] = json.loads(policy.inputs["policy"])["Statement"]
    account = training.spec.account_id
    platform_account = rendered_fleet["platform"].spec.account_id
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Resource"] == sorted([f"arn:aws:iam::{account}:role/gpufleet-operator",
                                            f"arn:aws:iam::{platform_account}:role/gpufleet-healer-journal"])


def test_an_inference_head_is_given_no_way_to_the_journal(rendered_fleet):
    from dataclasses import replace

    from gpufleet.infra.model import Role

    spec = replace(rendered_fleet["training"].spec, role=Role.INFERENCE)
    assert healer_roles(spec, None) == (f"arn:aws:iam::{spec.account_id}:role/gpufleet-operator",)


def test_the_training_stack_ships_the_healer_to_its_head(rendered_fleet):
    training = rendered_fleet["training"]
    keys = {r.inputs["key"] for r in training.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    healer = {k.split("/healer/", 1)[1] for k in keys if "/healer/" in k}
    assert {"gpufleet/automation/heal/__main__.py", "gpufleet/automation/aws.py",
            "gpufleet/infra/baseline_policies.py"} <= healer, sorted(healer)[:20]


def test_the_head_archive_carries_the_collected_inventory_and_only_for_training(tmp_path, rendered_fleet):
    from dataclasses import replace

    from gpufleet.infra.healer_archive import INVENTORY
    from gpufleet.infra.model import Role
    from gpufleet.infra.program import SCHEDULER_INVENTORY
    from gpufleet.infra.slurm_composition import head_healer_files

    spec = rendered_fleet["training"].spec
    assert INVENTORY not in head_healer_files(spec, tmp_path)
    (tmp_path / SCHEDULER_INVENTORY).parent.mkdir(parents=True)
    (tmp_path / SCHEDULER_INVENTORY).write_text('{"version": 1}')
    assert head_healer_files(spec, tmp_path)[INVENTORY] == '{"version": 1}'
    assert head_healer_files(replace(spec, role=Role.INFERENCE), tmp_path) is None

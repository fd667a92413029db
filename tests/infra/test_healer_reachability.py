"""The healers as AWS callers (infra/reachability.py): the Slurm head's healer and the EKS healer
Deployment call exactly the services their IAM grants them (their own role's policy, and the
policies of the roles it may assume, followed through the rendered fleet), so the table and the
policies cannot drift; a training stack without a NAT path gets their endpoints (the DynamoDB
gateway scoped to the fleet's accounts, the journal's role's among them) and the head may reach the
gateway, and the guardrail `vpc.endpoints-without-nat` passes there and fails without them."""

from __future__ import annotations

import json

import pytest
import yaml

from gpufleet.infra import reachability, stackfile
from gpufleet.infra.guardrails import FleetContext, evaluate
from gpufleet.infra.model import ClusterKind
from gpufleet.infra.offline.render import render_fleet
from gpufleet.infra.reachability import Caller
from tests.infra.conftest import REPO
from tests.infra.test_eks_healer import healer_fleet, reference  # noqa: F401 - the fixtures
from tests.infra.test_reachability import services

ENDPOINT_OF_PREFIX = {"autoscaling": "autoscaling", "ec2": "ec2", "sts": "sts", "ssm": "ssm", "dynamodb": "dynamodb",
                      "kms": "kms", "cloudwatch": "monitoring", "aps": "aps-workspaces"}
"""IAM action prefix -> the endpoint service its API is reached at (a new prefix fails the lookup)."""
GRANTED_NOT_CALLED = {
    "monitoring": "cloudwatch:GetMetricData is `status --chart`'s, on the operator role the healer shares",
    "kms": "the journal key's grant holds kms:ViaService dynamodb: DynamoDB calls KMS, not the healer",
}
"""Services the healers' roles grant that no healer calls, and why."""
NOT_IAM = {"eks-auth": "the Pod Identity agent's exchange: no action of the healer's role"}
"""Services a healer calls that its roles do not grant (the call is not authorized by them)."""


def stack_files(tmp_path, **training: object):
    """The reference stack files with training's keys set (``network``: the network block)."""
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if path.name == "Pulumi.training.yaml":
            doc["config"].update({f"gpufleet:{k}": v for k, v in training.items()})
        (tmp_path / path.name).write_text(yaml.safe_dump(doc))
    return tmp_path


@pytest.fixture(scope="module")
def slurm_without_nat(tmp_path_factory):
    """The reference fleet with the training (Slurm) VPC's NAT off."""
    network = yaml.safe_load((REPO / "stacks" / "Pulumi.training.yaml").read_text())["config"]["gpufleet:network"]
    stacks = stack_files(tmp_path_factory.mktemp("stacks"), network={**network, "enableNat": False})
    specs = [stackfile.load_stack(stacks / f"Pulumi.{n}.yaml") for n in ("platform", "training", "inference")]
    return specs, {r.spec.name: r for r in render_fleet(specs)}


def role_policies(stacks, role_name: str) -> list[dict]:
    """The inline policies of the role named ``role_name``, wherever in the fleet it is rendered."""
    out = []
    for stack in stacks.values():
        roles = [r for r in stack.of_type("aws:iam/role:Role") if r.inputs.get("name") == role_name]
        ids = {r.outputs.get(key) for r in roles for key in ("id", "name")} - {None}
        out += [json.loads(p.inputs["policy"]) for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs.get("role") in ids]
    return out


def healer_policy(stacks, name_suffix: str) -> dict:
    """The healer's own policy on its role (the head's role holds the head's policies beside it)."""
    [policy] = [r for s in stacks.values() for r in s.of_type("aws:iam/rolePolicy:RolePolicy")
                if r.name.endswith(name_suffix)]
    return json.loads(policy.inputs["policy"])


def listed(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def granted(stacks, docs: list[dict], seen: frozenset[str] = frozenset()) -> set[str]:
    """Every action the policies grant: their own, and those of each role they may assume."""
    actions: set[str] = set()
    for doc in docs:
        for statement in doc["Statement"]:
            actions.update(listed(statement["Action"]))
            if "sts:AssumeRole" in listed(statement["Action"]):
                for name in {arn.rsplit("/", 1)[-1] for arn in listed(statement["Resource"])} - seen:
                    assumed = role_policies(stacks, name)
                    assert assumed, f"the healer may assume {name}, which the fleet does not render"
                    actions |= granted(stacks, assumed, seen | {name})
    return actions


def granted_services(stacks, name_suffix: str) -> set[str]:
    return {ENDPOINT_OF_PREFIX[a.split(":", 1)[0]] for a in granted(stacks, [healer_policy(stacks, name_suffix)])}


def called(callers) -> set[str]:
    return set(reachability.services_of(callers))


def test_the_slurm_healers_calls_are_what_its_roles_grant(rendered_fleet):
    callers = reachability.callers_of(ClusterKind.SLURM, holds_phi=False, heals=True)
    assert {Caller.SLURM_HEALER, Caller.HEALER_SSM_PROBE} <= set(callers)
    grants = granted_services(rendered_fleet, "-head-healer")
    assert {"sts", "autoscaling", "ec2", "dynamodb", "ssm"} <= grants, grants  # the chain was followed
    mine = called([Caller.SLURM_HEALER, Caller.HEALER_SSM_PROBE])
    assert grants - set(GRANTED_NOT_CALLED) == mine - set(NOT_IAM), (grants, mine)


def test_the_eks_healers_calls_are_what_its_roles_grant(healer_fleet):  # noqa: F811 - the fixture
    _, stacks = healer_fleet
    grants = granted_services(stacks, "eks-healer-role-policy")
    mine = called([Caller.EKS_HEALER])
    # The operator role it shares grants the Slurm gate's SSM probe; the EKS healer gates through a Job.
    assert grants - set(GRANTED_NOT_CALLED) - {"ssm"} == mine - set(NOT_IAM), (grants, mine)
    assert "ssm" in grants and "ssm" not in mine
    assert mine <= set(services(stacks["training"])), "the EKS training VPC reaches what its healer calls"


def test_only_a_training_stack_that_heals_calls_as_a_healer():
    eks = reachability.callers_of(ClusterKind.EKS, holds_phi=False, heals=True)
    assert Caller.EKS_HEALER in eks and Caller.HEALER_SSM_PROBE not in eks
    assert Caller.HEALER_SSM_PROBE not in reachability.callers_of(ClusterKind.SLURM, holds_phi=True, heals=True)
    for kind in ClusterKind:
        plain = reachability.callers_of(kind, holds_phi=False)
        assert not {Caller.SLURM_HEALER, Caller.EKS_HEALER, Caller.HEALER_SSM_PROBE} & set(plain)


def test_a_training_vpc_without_nat_has_the_healers_endpoints(slurm_without_nat):
    specs, stacks = slurm_without_nat
    stack = stacks["training"]
    assert not stack.spec.network.enable_nat and not stack.of_type("aws:ec2/natGateway:NatGateway")
    endpoints = services(stack)
    callers = reachability.callers_of(ClusterKind.SLURM, holds_phi=False, heals=True)
    assert set(endpoints) == called(callers)
    assert {"autoscaling", "dynamodb", "ec2", "sts", "ssm"} <= set(endpoints)
    gateway = endpoints["dynamodb"]
    assert gateway.inputs["vpcEndpointType"] == "Gateway" and gateway.inputs["routeTableIds"]
    [statement] = json.loads(gateway.inputs["policy"])["Statement"]
    # The journal is written as the platform's role: its account, beside this one.
    platform_account = stacks["platform"].spec.account_id
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": sorted(
        {stack.spec.account_id, platform_account})}}
    [head_sg] = [g for g in stack.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name == "slurm-sg"
                 or g.name.endswith("-sg") and "Slurm head" in g.inputs.get("description", "")]
    prefix_lists = {p for e in head_sg.inputs["egress"] for p in e.get("prefixListIds") or ()}
    assert gateway.outputs["prefixListId"] in prefix_lists, "the head may not reach the DynamoDB gateway"

    findings = evaluate([r for s in stacks.values() for r in s.resources], FleetContext.from_specs(specs))
    assert findings == [], "\n".join(f"{f.rule} {f.stack}/{f.resource}: {f.message}" for f in findings)
    from gpufleet.infra.guardrails.node_rules import callers_in

    assert {Caller.SLURM_HEALER, Caller.HEALER_SSM_PROBE} <= set(callers_in(stack.resources)), \
        "the guardrail sees the head's healer"
    # Without the gateway the guardrail names the healer's journal call.
    kept = [r for r in stack.resources if r is not gateway]
    broken = evaluate([*kept, *stacks["platform"].resources], FleetContext.from_specs(specs))
    assert [f.rule for f in broken] == ["vpc.endpoints-without-nat"]
    assert "slurm-healer calls dynamodb" in broken[0].message

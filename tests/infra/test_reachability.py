"""Reachability without a NAT (issue 11, item 1): the table of callers and the services they call,
the endpoints rendered from it, their policies, and the training NAT that the nodes can reach."""

from __future__ import annotations

import json

from gpufleet.infra import reachability
from gpufleet.infra.model import ClusterKind
from gpufleet.infra.reachability import Caller

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


def services(stack) -> dict[str, dict]:
    return {r.inputs["serviceName"].split(".", 3)[3]: r for r in stack.of_type(ENDPOINT)}


def test_every_call_has_a_reason_and_every_caller_evidence_or_no_calls():
    for caller in Caller:
        for call in reachability.CALLS[caller]:
            assert call.reason and call.service, caller
        assert reachability.EVIDENCE[caller] or not reachability.CALLS[caller], caller


def test_the_phi_stack_calls_what_the_issue_found_missing():
    callers = reachability.callers_of(ClusterKind.EKS, holds_phi=True)
    assert Caller.SESSION_MANAGER not in callers  # no interactive access with PHI
    assert {"ec2", "eks-auth", "aps-workspaces", "ecr.api", "ecr.dkr", "sts", "eks", "s3"} <= set(
        reachability.services_of(callers))
    slurm = reachability.services_of(reachability.callers_of(ClusterKind.SLURM, holds_phi=False))
    assert {"secretsmanager", "s3", "ssm", "ssmmessages", "ec2messages"} <= set(slurm)


def test_the_phi_vpc_has_an_endpoint_for_every_service_its_callers_call(rendered_fleet):
    stack = rendered_fleet["inference"]
    assert not stack.of_type("aws:ec2/natGateway:NatGateway")
    callers = reachability.callers_of(stack.spec.cluster_kind, holds_phi=stack.spec.holds_phi)
    endpoints = services(stack)
    assert set(endpoints) == set(reachability.services_of(callers))
    for service, endpoint in endpoints.items():
        if service in reachability.GATEWAY_SERVICES:
            assert endpoint.inputs["vpcEndpointType"] == "Gateway", endpoint.urn
            continue
        assert endpoint.inputs["vpcEndpointType"] == "Interface", endpoint.urn
        assert endpoint.inputs["privateDnsEnabled"] is True, endpoint.urn
        if service in reachability.POLICY_SERVICES:
            [statement] = json.loads(endpoint.inputs["policy"])["Statement"]
            # This account, and the platform's (the collector remote-writes as the platform's role).
            assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": [
                "111111111111", "333333333333"]}}, endpoint.urn
        else:
            assert "policy" not in endpoint.inputs, endpoint.urn


def test_the_training_nat_is_reachable_by_the_gpu_nodes(rendered_fleet):
    stack = rendered_fleet["training"]
    assert stack.spec.network.enable_nat
    nats = {n.outputs["id"] for n in stack.of_type("aws:ec2/natGateway:NatGateway")}
    private = [t for t in stack.of_type("aws:ec2/routeTable:RouteTable") if "private" in t.name]
    assert nats and private
    for table in private:
        assert [r["natGatewayId"] for r in table.inputs["routes"] if r["cidrBlock"] == "0.0.0.0/0"][0] in nats
    node_groups = [g for g in stack.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-sg")
                   and g.name.startswith("train-")]
    assert node_groups
    for group in node_groups:
        assert any(e.get("cidrBlocks") == ["0.0.0.0/0"] and (e["fromPort"], e["toPort"]) == (443, 443)
                   for e in group.inputs["egress"]), group.urn
    # No NAT in the PHI stack, and no egress beyond the VPC and the S3 prefix list there.
    for group in rendered_fleet["inference"].of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert all("0.0.0.0/0" not in (e.get("cidrBlocks") or ()) for e in group.inputs.get("egress") or ()), group.urn

"""Network under mocks: private subnets by AZ ID, NAT only where configured, endpoints reachable
from the VPC only, encrypted flow logs."""

from __future__ import annotations

import pulumi
import pytest

from gpufleet.infra.network import Network, NetworkArgs

INTERFACE_SERVICES = ("ec2", "ecr.api", "ecr.dkr", "sts")

AZS = ("use1-az4", "use1-az6")


def network(enable_nat: bool) -> Network:
    return Network("net", NetworkArgs(cidr="10.20.0.0/16", az_ids=AZS, region="us-east-1",
                                      account_id="222222222222", enable_nat=enable_nat,
                                      interface_services=INTERFACE_SERVICES))


@pytest.mark.parametrize("enable_nat", [False, True])
def test_subnets_routes_and_nat(mock_runtime, enable_nat):
    net = network(enable_nat)

    def check(args):
        urn, ids = args
        assert sorted(ids) == sorted(AZS), f"{urn}: private subnets {ids}"
        return True

    assert mock_runtime.settle(pulumi.Output.all(net.vpc.urn, pulumi.Output.from_input(net.private_subnet_ids)).apply(check))
    subnets = mock_runtime.registered("aws:ec2/subnet:Subnet")
    for s in subnets:
        assert s["inputs"]["mapPublicIpOnLaunch"] is False, s["urn"]
        assert s["inputs"]["availabilityZoneId"] in AZS, s["urn"]
    private = [s for s in subnets if s["inputs"]["tags"]["gpufleet:tier"] == "private"]
    assert sorted(s["inputs"]["availabilityZoneId"] for s in private) == sorted(AZS)
    nats = mock_runtime.registered("aws:ec2/natGateway:NatGateway")
    igws = mock_runtime.registered("aws:ec2/internetGateway:InternetGateway")
    assert len(nats) == (len(AZS) if enable_nat else 0)
    assert len(igws) == (1 if enable_nat else 0)
    assert len(subnets) == len(AZS) * (2 if enable_nat else 1)
    public_ids = {s["id"] for s in subnets if s["inputs"]["tags"]["gpufleet:tier"] == "public"}
    assert {n["inputs"]["subnetId"] for n in nats} == public_ids


def test_no_public_ingress_and_endpoints_reachable_from_the_vpc_only(mock_runtime):
    net = network(enable_nat=True)
    mock_runtime.settle(net.vpc.id)
    for sg in mock_runtime.registered("aws:ec2/securityGroup:SecurityGroup"):
        for rule in sg["inputs"].get("ingress", []):
            assert rule.get("cidrBlocks") == ["10.20.0.0/16"], f"{sg['urn']}: ingress {rule}"
            assert (rule["fromPort"], rule["toPort"]) == (443, 443), f"{sg['urn']}: ingress {rule}"
    endpoints = mock_runtime.registered("aws:ec2/vpcEndpoint:VpcEndpoint")
    services = sorted(e["inputs"]["serviceName"] for e in endpoints)
    assert services == sorted([f"com.amazonaws.us-east-1.{s}" for s in INTERFACE_SERVICES] + ["com.amazonaws.us-east-1.s3"])
    for e in endpoints:
        if e["inputs"]["vpcEndpointType"] == "Interface":
            assert e["inputs"]["privateDnsEnabled"] is True, e["urn"]
            assert len(e["inputs"]["subnetIds"]) == len(AZS), e["urn"]
        else:
            assert len(e["inputs"]["routeTableIds"]) == len(AZS), e["urn"]


def test_flow_logs_go_to_a_cmk_encrypted_log_group(mock_runtime):
    net = network(enable_nat=False)
    mock_runtime.settle(net.vpc.id)
    [key] = mock_runtime.registered("aws:kms/key:Key")
    [group] = mock_runtime.registered("aws:cloudwatch/logGroup:LogGroup")
    [flow] = mock_runtime.registered("aws:ec2/flowLog:FlowLog")
    [role] = mock_runtime.registered("aws:iam/role:Role")
    assert key["inputs"]["enableKeyRotation"] is True, key["urn"]
    assert '"logs.us-east-1.amazonaws.com"' in key["inputs"]["policy"], key["urn"]
    assert group["inputs"]["kmsKeyId"] == key["outputs"]["arn"], group["urn"]
    assert flow["inputs"]["logDestination"] == group["outputs"]["arn"], flow["urn"]
    assert flow["inputs"]["iamRoleArn"] == role["outputs"]["arn"], flow["urn"]
    assert flow["inputs"]["trafficType"] == "ALL", flow["urn"]


@pytest.mark.parametrize(("field", "value"), [("cidr", "10.0.0.0/8"), ("az_ids", ("us-east-1a",)),
                                              ("region", "mars-1"), ("account_id", "12345"),
                                              ("interface_services", ("s3",)),
                                              ("interface_services", ("ecr.api", "ecr.api")),
                                              ("interface_services", ("com.amazonaws.us-east-1.sts",))])
def test_bad_args_name_the_field_and_value(field, value):
    args = dict(cidr="10.0.0.0/16", az_ids=AZS, region="us-east-1", account_id="222222222222")
    args[field] = value
    with pytest.raises(ValueError, match=f"^{field}: "):
        NetworkArgs(**args)


def test_default_security_group_is_adopted_with_no_rules(mock_runtime):
    net = network(enable_nat=False)
    vpc_id = mock_runtime.settle(net.vpc_id)
    [group] = mock_runtime.registered("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert group["inputs"]["vpcId"] == vpc_id
    assert group["inputs"]["ingress"] == [] and group["inputs"]["egress"] == []

"""A private VPC: subnets per AZ ID, endpoints instead of internet egress, encrypted flow logs."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, ec2, iam

from gpufleet.infra import cidr, reachability
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.stackfile import ACCOUNT_ID, AZ_ID, REGION

__all__ = ["Network", "NetworkArgs"]

FLOW_LOG_RETENTION_DAYS = 365
SERVICE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)?$")


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    cidr: str
    """VPC IPv4 block, /16 to /24."""
    az_ids: tuple[str, ...]
    """AZ IDs (use1-az4) to put a private subnet in, one each."""
    region: str
    """Region of the VPC; endpoint service names are regional."""
    account_id: str
    """Account of the VPC; owns the flow-log key."""
    enable_nat: bool = False
    """One NAT gateway per AZ (with a small public subnet and an internet gateway for it)."""
    interface_services: tuple[str, ...] = ()
    """Services reached through interface endpoints (private DNS): the stack's callers' services
    from gpufleet.infra.reachability, less the S3 gateway."""
    gateway_services: tuple[str, ...] = ()
    """Gateway endpoints beside S3's (always rendered: every node fetches its bundle): ``dynamodb``
    where a healer writes the journal."""
    endpoint_principal_accounts: Sequence[pulumi.Input[str]] = ()
    """Accounts whose principals may use the endpoints that take a policy (this account, and the
    platform's, whose remote-write role the metrics collector assumes); empty: this account only."""

    def __post_init__(self) -> None:
        try:
            net = ipaddress.IPv4Network(self.cidr)
        except ValueError:
            raise ValueError(f"cidr: {self.cidr!r} is not an IPv4 CIDR block") from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError(f"cidr: {self.cidr!r} must be between /16 and /24")
        if not self.az_ids or any(not AZ_ID.match(az) for az in self.az_ids):
            raise ValueError(f"az_ids: {self.az_ids!r} must be AZ IDs like use1-az4")
        if len(set(self.az_ids)) != len(self.az_ids):
            raise ValueError(f"az_ids: {self.az_ids!r} repeat")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        for service in self.interface_services:
            if service in reachability.GATEWAY_SERVICES or not SERVICE.match(service):
                raise ValueError(f"interface_services: {service!r} is not an interface endpoint service")
        for service in self.gateway_services:
            if service not in reachability.GATEWAY_SERVICES or service == "s3":
                raise ValueError(f"gateway_services: {service!r} is not a gateway endpoint service besides s3")
        if len(set(self.interface_services)) != len(self.interface_services):
            raise ValueError(f"interface_services: {list(self.interface_services)!r} repeat")


def endpoint_policy(accounts: Sequence[str]) -> dict[str, object]:
    """Only principals of the fleet's accounts may call through the endpoint (a stolen credential
    of another account cannot use it as an exfiltration path)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "FleetPrincipalsOnly", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": sorted({a for a in accounts if a})}}}]}


class Network(pulumi.ComponentResource):
    """Outputs: ``vpc_id``, ``cidr``, ``private_subnet_ids`` (AZ ID -> subnet id),
    ``s3_prefix_list_id`` (for security group egress to the S3 gateway endpoint),
    ``gateway_prefix_list_ids`` (the other gateway endpoints', by service)."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plans = cidr.plan_subnets(args.cidr, args.az_ids, enable_nat=args.enable_nat)

        self.vpc = ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True,
                           enable_dns_hostnames=True, tags={"Name": f"{name}-vpc"}, opts=child)
        # Adopts the VPC's default group and removes its rules (CIS 5.4): nothing uses it by accident.
        ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[],
                                 tags={"Name": f"{name}-default-no-rules"}, opts=child)
        self.private_subnets: dict[str, ec2.Subnet] = {}
        public_subnets: dict[str, ec2.Subnet] = {}
        for plan in plans:
            subnet = ec2.Subnet(
                f"{name}-{plan.tier}-{plan.az_id}", vpc_id=self.vpc.id, cidr_block=plan.cidr,
                availability_zone_id=plan.az_id, map_public_ip_on_launch=False,
                tags={"Name": f"{name}-{plan.tier}-{plan.az_id}", "gpufleet:tier": plan.tier.value},
                opts=child,
            )
            target = self.private_subnets if plan.tier is cidr.SubnetTier.PRIVATE else public_subnets
            target[plan.az_id] = subnet

        nat_by_az: dict[str, ec2.NatGateway] = {}
        if args.enable_nat:
            igw = ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=child)
            public_rt = ec2.RouteTable(
                f"{name}-public-rt", vpc_id=self.vpc.id,
                routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)], opts=child)
            for az, subnet in public_subnets.items():
                ec2.RouteTableAssociation(f"{name}-public-rta-{az}", subnet_id=subnet.id,
                                          route_table_id=public_rt.id, opts=child)
                eip = ec2.Eip(f"{name}-nat-eip-{az}", domain="vpc", opts=child)
                nat_by_az[az] = ec2.NatGateway(f"{name}-nat-{az}", allocation_id=eip.id,
                                               subnet_id=subnet.id, opts=child)

        private_rts = []
        for az, subnet in self.private_subnets.items():
            routes = ([ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_by_az[az].id)]
                      if az in nat_by_az else [])
            rt = ec2.RouteTable(f"{name}-private-rt-{az}", vpc_id=self.vpc.id, routes=routes, opts=child)
            ec2.RouteTableAssociation(f"{name}-private-rta-{az}", subnet_id=subnet.id,
                                      route_table_id=rt.id, opts=child)
            private_rts.append(rt)

        self.s3_endpoint = ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_rts], opts=child)
        accounts = pulumi.Output.all(args.account_id, *args.endpoint_principal_accounts)
        gateways = {service: ec2.VpcEndpoint(
            f"{name}-{service}", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.{service}",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_rts],
            policy=accounts.apply(lambda a: json.dumps(endpoint_policy(a))), opts=child)
            for service in args.gateway_services}
        endpoint_sg = ec2.SecurityGroup(
            f"{name}-endpoints-sg", vpc_id=self.vpc.id,
            description="Interface endpoints: HTTPS from inside the VPC only",
            ingress=[ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                  cidr_blocks=[args.cidr], description="HTTPS from the VPC")],
            egress=[], opts=child)
        subnet_ids = [s.id for s in self.private_subnets.values()]
        for service in args.interface_services:
            ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}", vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=subnet_ids, security_group_ids=[endpoint_sg.id],
                policy=(accounts.apply(lambda a: json.dumps(endpoint_policy(a)))
                        if service in reachability.POLICY_SERVICES else None),
                opts=child)

        self._flow_logs(name, args, child)

        self.vpc_id = self.vpc.id
        self.cidr = args.cidr
        self.private_subnet_ids: dict[str, pulumi.Output[str]] = {
            az: s.id for az, s in self.private_subnets.items()}
        self.s3_prefix_list_id = self.s3_endpoint.prefix_list_id
        self.gateway_prefix_list_ids: dict[str, pulumi.Output[str]] = {
            service: endpoint.prefix_list_id for service, endpoint in gateways.items()}
        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids})

    def _flow_logs(self, name: str, args: NetworkArgs, child: pulumi.ResourceOptions) -> None:
        key = EncryptionKey(f"{name}-flow-logs-key", EncryptionKeyArgs(
            description=f"{name} VPC flow logs", account_id=args.account_id, region=args.region,
            services=(KeyService.LOGS,)), opts=child)
        group = cloudwatch.LogGroup(f"{name}-flow-logs", retention_in_days=FLOW_LOG_RETENTION_DAYS,
                                    kms_key_id=key.arn, opts=child)
        role = iam.Role(f"{name}-flow-logs-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                           "Action": "sts:AssumeRole",
                           "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}}],
        }), opts=child)
        iam.RolePolicy(f"{name}-flow-logs-policy", role=role.id, policy=group.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                           "Resource": [arn, f"{arn}:*"]},
                          # DescribeLogGroups takes no resource ARN: "*" is the only valid Resource.
                          {"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}],
        })), opts=child)
        ec2.FlowLog(f"{name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL",
                    log_destination_type="cloud-watch-logs", log_destination=group.arn,
                    iam_role_arn=role.arn, opts=child)

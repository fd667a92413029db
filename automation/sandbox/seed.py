"""Build the fleet the stack files describe inside the emulated AWS, and return its inventory.

Each stack's account is entered the way Pulumi would enter it: STS AssumeRole of the stack's
``deployRoleArn`` (the emulator, like AWS, puts the role's resources in the role's account).

- platform: one targeted capacity reservation per pool (AZ ID as configured), a RAM resource share
  of it to each consumer account in ``shareWith``, and the rebalance journal table;
- each consumer: the operator role (trusting the platform account, with an external id), a VPC
  with one subnet per AZ ID, and per node group a launch template targeting its pool's reservation
  and an Auto Scaling group of ``initialNodes`` instances, which consume the reservation.

The result is an inventory document (gpufleet.automation.inventory): each stack's outputs written
through the contract (gpufleet.infra.contract), sources of kind ``sandbox``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Callable, Sequence
from typing import Any

import boto3

from gpufleet.automation.inventory import FleetInventory, StackSource, now_iso
from gpufleet.automation.rebalance.journal import TABLE_SCHEMA
from gpufleet.infra.contract import NodeGroupOutput, PoolOutput, StackOutputs
from gpufleet.infra.model import Role, StackSpec

JOURNAL_TABLE = "gpufleet-rebalance-journal"
OPERATOR_ROLE = "gpufleet-operator"
SANDBOX_AMI = "ami-0123456789abcdef0"


def asg_name(stack: str, group: str) -> str:
    return f"gpufleet-{stack}-{group}"


def external_id(stack: str) -> str:
    return f"gpufleet-{stack}-operator"


@functools.cache
def _base_session(credentials: tuple[str, str]) -> boto3.Session:
    # One session per process: botocore builds each client class once per session (~40 ms each).
    return boto3.Session(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1])


class Seeder:
    """Seeds one emulator endpoint; ``progress`` gets one line per step."""

    def __init__(self, endpoint: str, credentials: tuple[str, str],
                 progress: Callable[[str], None] | None = None) -> None:
        self.endpoint = endpoint
        self.base = _base_session(credentials)
        self.progress = progress or (lambda _line: None)

    def session(self, spec: StackSpec) -> dict[str, str]:
        """Credentials of the stack's deploy role (clients share one botocore session: faster)."""
        sts = self.base.client("sts", region_name=spec.region, endpoint_url=self.endpoint)
        creds = sts.assume_role(RoleArn=spec.deploy_role_arn, RoleSessionName="gpufleet-sandbox-seed")["Credentials"]
        return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"], "region_name": spec.region}

    def client(self, session: dict[str, str], service: str) -> Any:
        return self.base.client(service, endpoint_url=self.endpoint, **session)

    def seed(self, specs: Sequence[StackSpec]) -> dict[str, Any]:
        platform = next(s for s in specs if s.role is Role.PLATFORM)
        outputs: dict[str, StackOutputs] = {platform.name: self.seed_platform(platform)}
        pools = {p.name: p for p in outputs[platform.name].pools}
        for spec in specs:
            if spec.role is not Role.PLATFORM:
                outputs[spec.name] = self.seed_consumer(spec, platform, pools)
        collected_at = now_iso()
        inventory = FleetInventory(stacks=outputs, collected_at=collected_at, sources={
            name: StackSource(kind="sandbox", location=self.endpoint, updated_at=collected_at) for name in outputs})
        return {**inventory.to_dict(), "generatedBy": "gpufleet sandbox", "endpoint": self.endpoint}

    def seed_platform(self, spec: StackSpec) -> StackOutputs:
        self.progress(f"{spec.name}: account {spec.account_id}, {len(spec.pools)} capacity pools")
        session = self.session(spec)
        ec2, ram = self.client(session, "ec2"), self.client(session, "ram")
        pools = []
        for pool in spec.pools:
            reservation = ec2.create_capacity_reservation(
                InstanceType=pool.instance_type, InstancePlatform="Linux/UNIX", AvailabilityZoneId=pool.az_id,
                InstanceCount=pool.count, InstanceMatchCriteria="targeted", EndDateType="unlimited",
                TagSpecifications=[{"ResourceType": "capacity-reservation",
                                    "Tags": [{"Key": "Name", "Value": pool.name}, {"Key": "gpufleet:pool", "Value": pool.name}]}],
            )["CapacityReservation"]
            principals = [spec.consumer_accounts[role] for role in pool.share_with]
            if principals:
                ram.create_resource_share(name=f"gpufleet-{pool.name}", resourceArns=[reservation["CapacityReservationArn"]],
                                          principals=principals, allowExternalPrincipals=True)
            self.progress(f"  pool {pool.name}: {reservation['CapacityReservationId']} {pool.count} x "
                          f"{pool.instance_type} in {pool.az_id}, shared with {', '.join(principals) or 'nobody'}")
            pools.append(PoolOutput(name=pool.name, instance_type=pool.instance_type, az_id=pool.az_id,
                                    count=pool.count, kind=pool.kind.value,
                                    reservation_id=reservation["CapacityReservationId"],
                                    reservation_arn=reservation["CapacityReservationArn"]))
        self.client(session, "dynamodb").create_table(TableName=JOURNAL_TABLE, **TABLE_SCHEMA)
        self.progress(f"  journal table {JOURNAL_TABLE}")
        return StackOutputs(role=spec.role.value, account_id=spec.account_id, region=spec.region,
                            pools=tuple(pools), journal_table=JOURNAL_TABLE)

    def seed_consumer(self, spec: StackSpec, platform: StackSpec, pools: dict[str, PoolOutput]) -> StackOutputs:
        self.progress(f"{spec.name}: account {spec.account_id}, {len(spec.node_groups)} node groups")
        session = self.session(spec)
        iam, ec2, asg = self.client(session, "iam"), self.client(session, "ec2"), self.client(session, "autoscaling")
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{platform.account_id}:root"},
            "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": external_id(spec.name)}}}]}
        role_arn = iam.create_role(RoleName=OPERATOR_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        zones = {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
        vpc_id = ec2.create_vpc(CidrBlock=spec.network.cidr)["Vpc"]["VpcId"]
        network = ipaddress.IPv4Network(spec.network.cidr)
        blocks = network.subnets(new_prefix=min(network.prefixlen + 4, 28))
        subnets: dict[str, str] = {}
        for az_id in spec.az_ids:
            subnets[az_id] = ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(next(blocks)), AvailabilityZoneId=az_id)["Subnet"]["SubnetId"]
        self.progress(f"  operator role {role_arn}; VPC {vpc_id}; subnets in {', '.join(f'{a} ({zones[a]})' for a in subnets)}")
        groups = []
        for group in spec.node_groups:
            pool = pools[group.pool]
            data: dict[str, Any] = {
                "ImageId": SANDBOX_AMI, "InstanceType": group.instance_type,
                "CapacityReservationSpecification": {"CapacityReservationTarget": {"CapacityReservationId": pool.reservation_id}},
            }
            if group.enable_placement_group:
                placement = f"gpufleet-{spec.name}-{group.name}"
                ec2.create_placement_group(GroupName=placement, Strategy="cluster")
                data["Placement"] = {"GroupName": placement}
            template = ec2.create_launch_template(LaunchTemplateName=f"gpufleet-{spec.name}-{group.name}",
                                                  LaunchTemplateData=data)["LaunchTemplate"]
            name = asg_name(spec.name, group.name)
            tags = {"gpufleet:pool": group.pool, "gpufleet:nodeGroup": group.name}
            asg.create_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=group.min_nodes, MaxSize=group.max_nodes,
                DesiredCapacity=group.initial_nodes, VPCZoneIdentifier=subnets[pool.az_id],
                LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
                Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
            )
            self.progress(f"  node group {group.name}: {name}, {group.initial_nodes} x {group.instance_type} on {group.pool}")
            groups.append(NodeGroupOutput(
                name=group.name, pool=group.pool, instance_type=group.instance_type, asg_name=name, asg_tags=tags,
                min_nodes=group.min_nodes, max_nodes=group.max_nodes, initial_nodes=group.initial_nodes,
                # The sandbox emulates AWS alone: no Slurm or Kubernetes answers for these
                # nodes, so the rebalancer has nothing to drain (see orchestrators/base.py).
                orchestrator="none"))
        return StackOutputs(role=spec.role.value, account_id=spec.account_id, region=spec.region,
                            operator_role_arn=role_arn, external_id=external_id(spec.name), vpc_id=vpc_id,
                            private_subnet_ids=subnets, node_groups=tuple(groups))

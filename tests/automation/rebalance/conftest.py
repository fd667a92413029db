"""Fixtures for the rebalance tests: a moto server on 127.0.0.1 for the journal tests, the
sandbox's fleet, and that fleet with a real local Slurm answering for its training nodes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.automation.rebalance.journal import create_table
from gpufleet.infra.capacity import Consumer, tally
from tests.automation.rebalance.capacity_block import as_capacity_block
from tests.automation.slurm_checkpoint_jobs import marks, on_local_slurm


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def journal_ddb(moto_endpoint, request):
    """A DynamoDB client on the moto server and a fresh journal table name."""
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    table = "journal-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    create_table(ddb, table)
    return ddb, table


@pytest.fixture
def fleet(sandbox):
    """The sandbox's reference fleet as applied (its inventory stands in ``none`` for every node
    group's orchestrator: nothing to drain)."""
    return Fleet(endpoint=sandbox.endpoint, inventory_path=sandbox.inventory, control=sandbox.client, env=sandbox.env)


class Fleet:
    def __init__(self, *, endpoint, inventory_path, control, env):
        from gpufleet.automation.inventory import load_inventory

        self.endpoint = endpoint
        self.inventory_path = inventory_path
        self.control = control
        self.env = env
        self.inventory = load_inventory(inventory_path)
        self._clients = {}

    def client(self, stack: str, service: str):
        """A client in the stack's account, through its operator role (as the automation does)."""
        key = (stack, service)
        if key not in self._clients:
            account = self.inventory.stacks[stack]
            base = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=account.region)
            if account.operator_role_arn:
                extra = {"ExternalId": account.external_id} if account.external_id else {}
                creds = base.client("sts", endpoint_url=self.endpoint).assume_role(
                    RoleArn=account.operator_role_arn, RoleSessionName="test", **extra)["Credentials"]
                base = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                     aws_session_token=creds["SessionToken"], region_name=account.region)
            self._clients[key] = base.client(service, endpoint_url=self.endpoint)
        return self._clients[key]

    def asg(self, group: str) -> str:
        """The Auto Scaling group of a node group (its name from the stack file)."""
        return next(g.group.asg_name for g in self.inventory.node_groups if g.group.name == group)

    def desired(self) -> dict[str, int]:
        """Desired size of every node group, by node group name (unique in the reference fleet)."""
        out = {}
        for g in self.inventory.node_groups:
            asg = self.client(g.stack, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[g.group.asg_name])
            out[g.group.name] = asg["AutoScalingGroups"][0]["DesiredCapacity"]
        return out

    def running(self) -> dict[str, set[str]]:
        """Running instances per account (stack), from EC2."""
        out = {}
        for stack, account in self.inventory.stacks.items():
            if account.role == "platform":
                continue
            ec2 = self.client(stack, "ec2")
            ids = set()
            for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]:
                ids.update(i["InstanceId"] for i in r["Instances"])
            out[stack] = ids

        return out

    def check_invariant(self) -> None:
        """Every pool: sum of desired <= count, and the reservation is not over-used."""
        desired = self.desired()
        usage = tally(self.inventory.pools, (Consumer(pool=g.group.pool, role=g.role, nodes=desired[g.group.name])
                                             for g in self.inventory.node_groups))
        for pool in usage:
            assert pool.free >= 0, f"pool {pool.name}: desired {pool.used} > {pool.count}"
        running = self.running()
        seen = [i for ids in running.values() for i in ids]
        assert len(seen) == len(set(seen)), "an instance serves in two accounts"
        for r in self.control.reservations():
            in_groups = sum(len(self.live(g)) for g in self.inventory.node_groups if g.group.pool == r["name"])
            # every reserved slot is either held by exactly one live node of a consumer, or free
            assert 0 <= r["used"] <= r["total"] and r["used"] == in_groups, (r, in_groups)

    def live(self, group) -> list[str]:
        doc = self.client(group.stack, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group.group.asg_name])
        return [i["InstanceId"] for i in doc["AutoScalingGroups"][0]["Instances"]
                if not i["LifecycleState"].startswith("Terminat")]


@pytest.fixture
def lend_stacks(sandbox, tmp_path):
    """The sandbox's stack files with the H100 schedule lending up to 3 slots (``lend: {maxNodes: 3}``)."""
    stacks = tmp_path / "stacks"
    shutil.copytree(sandbox.stacks_dir, stacks)
    platform_file = stacks / "Pulumi.platform.yaml"
    text = platform_file.read_text()
    assert text.count("      trainingFloor: 2\n") == 1
    platform_file.write_text(text.replace("      trainingFloor: 2\n", "      trainingFloor: 2\n      lend:\n        maxNodes: 3\n"))
    return stacks


@dataclass(frozen=True)
class SlurmFleet:
    """The sandbox's fleet whose train-h100 instances are the nodes of a real local Slurm."""

    slurm: Any
    """The started cluster (tests/slurm_harness.py), node1..node5 idle."""
    inventory_path: Path
    """The fleet's inventory without its orchestrator stand-in: the Slurm answers for the training
    nodes, the inference groups have no orchestrator (no Kubernetes API here)."""
    node_of: dict[str, str]
    """Slurm node name by instance id, as the node bootstrap records it in the node's comment."""
    marks: Path
    """An empty directory every job may write its marks in."""


@pytest.fixture
def slurm_fleet(fleet, make_local_slurm, monkeypatch, tmp_path):
    """The reference fleet with a real local Slurm, a node per train-h100 instance (``SLURM_CONF`` set)."""
    asg = fleet.client("training", "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[fleet.asg("train-h100")])["AutoScalingGroups"][0]
    ids = sorted(i["InstanceId"] for i in asg["Instances"])
    slurm, inventory_path = on_local_slurm(make_local_slurm, fleet.inventory_path, ids, monkeypatch, tmp_path)
    return SlurmFleet(slurm=slurm, inventory_path=inventory_path, node_of=dict(zip(ids, slurm.node_names, strict=True)),
                      marks=marks(tmp_path))


@pytest.fixture
def block(fleet, tmp_path):
    """The sandbox's inventory with the H100 pool bought as a Capacity Block ending at END
    (tests/automation/rebalance/capacity_block.py)."""
    return as_capacity_block(fleet.inventory_path, tmp_path / "inventory.json")

"""The one reader of Auto Scaling groups: what live, in service and healthy mean, read the same way
by status, the rebalancer and health."""

from __future__ import annotations

import pytest

from gpufleet.automation.auto_scaling import GroupObs, InstanceObs, read_group, read_groups
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.health.replace import in_service
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance import asg
from gpufleet.automation.status import fleet_status
from gpufleet.infra.errors import AwsError
from tests.automation.sandbox.deployer import DeployerAccess


def group(*states: tuple[str, str]) -> GroupObs:
    return GroupObs(asg_name="g", desired=len(states), min_size=0, max_size=9, instances=tuple(
        InstanceObs(instance_id=f"i-{n}", lifecycle_state=state, health_status=health)
        for n, (state, health) in enumerate(states)))


def test_live_in_service_and_healthy_are_nested():
    g = group(("Pending", "Healthy"), ("InService", "Healthy"), ("InService", "Unhealthy"), ("Standby", "Healthy"),
              ("Terminating", "Healthy"), ("Terminating:Wait", "Unhealthy"), ("Detaching", "Healthy"),
              ("Detached", "Healthy"), ("Terminated", "Healthy"))
    assert g.live == ["i-0", "i-1", "i-2", "i-3"]
    assert g.in_service == ["i-1", "i-2"]
    assert g.healthy == ["i-1"]


@pytest.fixture
def serve(sandbox):
    """The inference group at 3 nodes (the pool's last free slot): one Unhealthy, one in Standby."""
    inventory = load_inventory(sandbox.inventory)
    access = AwsAccess(inventory, operation="test")
    client = access.client("inference", "autoscaling")
    admin = DeployerAccess(sandbox).client("inference", "autoscaling")  # health and standby set by someone else
    name = inventory.groups_of("inference")[0].group.asg_name
    admin.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=3)
    ids = sorted(i["InstanceId"] for i in client.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"])
    assert len(ids) == 3
    admin.set_instance_health(InstanceId=ids[0], HealthStatus="Unhealthy")
    admin.enter_standby(InstanceIds=[ids[1]], AutoScalingGroupName=name, ShouldDecrementDesiredCapacity=False)
    return inventory, access, client, name


def test_status_rebalance_and_health_count_the_same_instances(sandbox, serve):
    inventory, access, client, name = serve
    mine = read_group(client, name, "inference")
    assert (len(mine.live), len(mine.in_service), len(mine.healthy)) == (3, 2, 1)
    status = next(g for g in fleet_status(inventory, access).node_groups if g.asg_name == name)
    assert (status.desired, status.live, status.in_service, status.healthy) == (
        mine.desired, len(mine.live), len(mine.in_service), len(mine.healthy))
    assert asg.observe(client, name, "inference") == mine  # the rebalancer's view
    assert in_service(client, name) == (mine.desired, mine.in_service)  # health's targets


def test_a_missing_group_is_absent_from_a_read_and_an_error_for_one(sandbox):
    inventory = load_inventory(sandbox.inventory)
    client = AwsAccess(inventory, operation="test").client("inference", "autoscaling")
    assert read_groups(client, ["gpufleet-inference-nope"], "inference") == {}
    with pytest.raises(AwsError, match="gpufleet-inference-nope does not exist"):
        read_group(client, "gpufleet-inference-nope", "inference")

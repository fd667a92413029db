"""The Auto Scaling calls the executor makes; a failure is an AwsCallError (automation/aws.py)
that says how to go on.

``asg`` is an ``autoscaling`` client of the account holding the group (an ``AwsClient``, or boto3's).
"""

from __future__ import annotations

from typing import Any

from gpufleet.automation.aws import translated
from gpufleet.automation.rebalance.plan import GroupObs, InstanceObs
from gpufleet.infra.errors import AwsError

ICE = "InsufficientInstanceCapacity"
RESUME_HINT = "the journal says what was done; resume with --resume, or cancel with --cancel"


def call(client: Any, name: str, where: str, **kwargs: Any) -> Any:
    """One AWS call; retries are the client's (adaptive). ``where``: ``<stack>/<group>``."""
    stack, _, group = where.partition("/")
    with translated(stack=stack, service="autoscaling", operation=name, subject=group, hint=RESUME_HINT):
        return getattr(client, name)(**kwargs)


def observe(asg: Any, name: str, where: str) -> GroupObs:
    doc = call(asg, "describe_auto_scaling_groups", where, AutoScalingGroupNames=[name])
    groups = doc.get("AutoScalingGroups", [])
    if not groups:
        raise AwsError(f"{where}: Auto Scaling group {name} does not exist",
                       "the inventory is stale: refresh it from the stack outputs")
    g = groups[0]
    return GroupObs(asg_name=name, desired=int(g["DesiredCapacity"]), min_size=int(g["MinSize"]),
                    max_size=int(g["MaxSize"]),
                    instances=tuple(InstanceObs(instance_id=i["InstanceId"], lifecycle_state=i["LifecycleState"],
                                                health_status=i.get("HealthStatus", "Healthy"))
                                    for i in g.get("Instances", [])))


def activity_ids(asg: Any, name: str, where: str) -> list[str]:
    doc = call(asg, "describe_scaling_activities", where, AutoScalingGroupName=name, MaxRecords=100)
    return [a["ActivityId"] for a in doc.get("Activities", [])]


def capacity_failures(asg: Any, name: str, where: str, known: set[str]) -> list[str]:
    """Messages of failed scaling activities mentioning insufficient capacity, not in ``known``."""
    doc = call(asg, "describe_scaling_activities", where, AutoScalingGroupName=name, MaxRecords=100)
    out = []
    for a in doc.get("Activities", []):
        text = " ".join(str(a.get(k, "")) for k in ("StatusMessage", "Description", "Details"))
        if a["ActivityId"] not in known and a.get("StatusCode") == "Failed" and ICE in text:
            out.append(a.get("StatusMessage") or text)
    return out


def terminate(asg: Any, instance_id: str, where: str) -> dict[str, Any]:
    """Terminate exactly this instance and lower the group's desired size by one."""
    doc = call(asg, "terminate_instance_in_auto_scaling_group", where, InstanceId=instance_id,
               ShouldDecrementDesiredCapacity=True)
    return {"activity": doc.get("Activity", {}).get("ActivityId")}


def set_desired(asg: Any, name: str, desired: int, where: str) -> None:
    call(asg, "set_desired_capacity", where, AutoScalingGroupName=name, DesiredCapacity=desired, HonorCooldown=False)

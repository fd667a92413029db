"""The Auto Scaling calls the executor makes; a failure is an AwsCallError (automation/aws.py)
that says how to go on.

``asg`` is a boto3 ``autoscaling`` client of the account holding the group. Reading a group is
``gpufleet.automation.auto_scaling`` (the one reader, shared with status and health).
"""

from __future__ import annotations

from typing import Any

from gpufleet.automation.auto_scaling import RESUME_HINT, GroupObs, call, read_group

ICE = "InsufficientInstanceCapacity"


def observe(asg: Any, name: str, where: str) -> GroupObs:
    return read_group(asg, name, where, RESUME_HINT)


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

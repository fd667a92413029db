"""The one reader of Auto Scaling groups, and what its words mean.

``gpufleet status``, the rebalancer and ``gpufleet health`` all observe node groups here, so
they count the same instances the same way. Per instance of a group (its Auto Scaling lifecycle
state and health status, as DescribeAutoScalingGroups reports them):

- **live**: in the group and not on its way out, i.e. any lifecycle state but ``Terminating*``,
  ``Terminated``, ``Detaching`` and ``Detached`` (``Pending*``, ``InService``, ``Standby``, ...).
  A live instance holds a slot of the pool's reservation, or is about to.
- **in service**: lifecycle state ``InService``: launched, past its lifecycle hooks, serving the
  group. Victims of a move and targets of a health check are picked among these.
- **healthy**: in service and health status ``Healthy`` (the group's EC2 health check).

``call`` is the one wrapper of an Auto Scaling API call: a botocore failure becomes AwsError
naming the call and the group (a client made by ``gpufleet.automation.aws`` already raises
gpufleet errors, which pass through).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpufleet.automation.aws import translated
from gpufleet.infra.errors import AwsError

IN_SERVICE = "InService"
HEALTHY = "Healthy"
LEAVING = ("Terminat", "Detach")
"""Prefixes of the lifecycle states of instances on their way out (Terminating, Terminating:Wait,
Terminating:Proceed, Terminated, Detaching, Detached)."""
NAMES_PER_CALL = 50
"""DescribeAutoScalingGroups takes at most 50 names per call."""
MAX_PAGES = 100
RESUME_HINT = "the journal says what was done; resume with --resume, or cancel with --cancel"


def call(client: Any, name: str, where: str, hint: str | None = RESUME_HINT, **kwargs: Any) -> Any:
    """One AWS call; retries are the client's (adaptive). A failure goes through the one translator
    (gpufleet.automation.aws.translated). ``where``: ``<stack>/<group>``, or the group alone."""
    stack, _, group = where.rpartition("/")
    with translated(stack=stack, service="autoscaling", operation=name, subject=group, hint=hint):
        return getattr(client, name)(**kwargs)


@dataclass(frozen=True, kw_only=True)
class InstanceObs:
    """One instance of a group as observed now."""

    instance_id: str
    lifecycle_state: str
    """Auto Scaling lifecycle state: Pending, InService, Terminating, ..."""
    health_status: str = HEALTHY
    """Healthy or Unhealthy (the group's health check)."""

    @property
    def is_live(self) -> bool:
        return not self.lifecycle_state.startswith(LEAVING)

    @property
    def is_in_service(self) -> bool:
        return self.lifecycle_state == IN_SERVICE

    @property
    def is_healthy(self) -> bool:
        return self.is_in_service and self.health_status == HEALTHY


@dataclass(frozen=True, kw_only=True)
class GroupObs:
    """An Auto Scaling group as observed now."""

    asg_name: str
    desired: int
    """DesiredCapacity: the live size (the rebalancer owns it)."""
    min_size: int
    max_size: int
    instances: tuple[InstanceObs, ...] = ()

    @property
    def live(self) -> list[str]:
        """Instances that are or will be running (not on their way out)."""
        return sorted(i.instance_id for i in self.instances if i.is_live)

    @property
    def in_service(self) -> list[str]:
        return sorted(i.instance_id for i in self.instances if i.is_in_service)

    @property
    def healthy(self) -> list[str]:
        return sorted(i.instance_id for i in self.instances if i.is_healthy)


def _group(doc: dict[str, Any]) -> GroupObs:
    return GroupObs(asg_name=doc["AutoScalingGroupName"], desired=int(doc["DesiredCapacity"]),
                    min_size=int(doc["MinSize"]), max_size=int(doc["MaxSize"]),
                    instances=tuple(InstanceObs(instance_id=i["InstanceId"], lifecycle_state=i["LifecycleState"],
                                                health_status=i.get("HealthStatus", HEALTHY))
                                    for i in doc.get("Instances", [])))


def read_groups(client: Any, names: Iterable[str], where: str, hint: str | None = None) -> dict[str, GroupObs]:
    """The named groups of one account that exist, by name (missing ones are absent); ``hint``
    goes with an AwsError of the call."""
    wanted = list(dict.fromkeys(names))
    out: dict[str, GroupObs] = {}
    for start in range(0, len(wanted), NAMES_PER_CALL):
        kwargs: dict[str, Any] = {"AutoScalingGroupNames": wanted[start:start + NAMES_PER_CALL], "MaxRecords": 100}
        for _ in range(MAX_PAGES):
            page = call(client, "describe_auto_scaling_groups", where, hint=hint, **kwargs)
            out.update((g["AutoScalingGroupName"], _group(g)) for g in page.get("AutoScalingGroups", []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return out


def read_group(client: Any, name: str, where: str, hint: str | None = None) -> GroupObs:
    """One group; a group that does not exist is an AwsError (the inventory is stale)."""
    found = read_groups(client, [name], where, hint).get(name)
    if found is None:
        raise AwsError(f"{where}: Auto Scaling group {name} does not exist",
                       "the inventory is stale: collect it again (gpufleet inventory collect)")
    return found

"""Is there a reservation slot for one more hot spare? Two ways to tell, read under the pool's lease.

- ``by_claims``: the healer can read every group of the pool (the automation's own heal pass): the
  groups' desired capacities together must leave a slot of the pool's count. Strict: it counts
  launches still in flight in any account.
- ``by_reservation``: a healer held to its own stack(s) (the Slurm head's service, the EKS
  Deployment) may not read the other stack's groups (DESIGN.md: the training account never reads the
  inference account), so it reads the engine's own count instead: the pool's capacity reservation
  as EC2 describes it to this account, which a RAM share lets a consumer describe
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharing-cr.html: a consumer verifies its
  access to a shared reservation "by describing it using the describe-capacity-reservations" call).
  ``AvailableInstanceCount`` is "the remaining capacity ... the number of instances that can be
  launched in the Capacity Reservation" (API_CapacityReservation), whoever launched the others, and
  each launch reduces it (capacity-reservations-launch.html). What it cannot see is another account's
  launch not yet made (a group of the other stack whose desired size is above its live instances):
  that group's launch then waits for capacity, as it would after any other consumer's launch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.aws import translated

ACTIVE = "active"
"""The only reservation state that launches instances (the others: expired, cancelled, pending, ...)."""


@dataclass(frozen=True, kw_only=True)
class Slot:
    """The answer, and what it was read from (journaled with the launch's intent, or its refusal)."""

    free: bool
    read: dict[str, Any] = field(default_factory=dict)
    """The counts read: journaled in the op, so a reader sees why the healer launched or not."""
    why: str = ""
    """Why there is no slot (the refusal's note); empty when free."""


def by_claims(asg: Callable[[str], Any], pool: str, groups: Sequence[Sequence[str]], count: int) -> Slot:
    """``groups``: every (stack, asg name) of the pool; ``count``: the pool's slots."""
    claimed = sum(read_group(asg(stack), name, name).desired for stack, name in groups)
    read = {"claimed": claimed, "slots": count}
    if claimed >= count:
        return Slot(free=False, read=read, why=f"pool {pool}: its groups claim {claimed} of {count} slots")
    return Slot(free=True, read=read)


def launching(asg: Callable[[str], Any], groups: Sequence[Sequence[str]]) -> int:
    """Launches the groups have yet to make: desired above their live instances. A Pending
    instance already holds its slot in EC2's count, so it is not counted twice."""
    total = 0
    for stack, name in groups:
        seen = read_group(asg(stack), name, name)
        total += max(0, seen.desired - len(seen.live))
    return total


def by_reservation(ec2: Callable[[str], Any], asg: Callable[[str], Any], stack: str, pool: str,
                   reservation_id: str, own_groups: Sequence[Sequence[str]]) -> Slot:
    """``stack``: the account that describes the reservation (the healer's own, a consumer of the
    share); ``own_groups``: the (stack, asg name) of this healer's groups on the pool."""
    with translated(stack=stack, service="ec2", operation="describe_capacity_reservations", subject=reservation_id,
                    hint=f"pool {pool}'s reservation must be shared with the {stack} account (RAM) and accepted"):
        [found] = ec2(stack).describe_capacity_reservations(
            CapacityReservationIds=[reservation_id])["CapacityReservations"]
    available = int(found.get("AvailableInstanceCount") or 0)
    state = str(found.get("State") or "")
    pending = launching(asg, own_groups)
    read = {"reservation": reservation_id, "state": state, "available": available,
            "total": int(found.get("TotalInstanceCount") or 0), "launching": pending}
    if state != ACTIVE:
        return Slot(free=False, read=read, why=f"pool {pool}: reservation {reservation_id} is {state}")
    if available - pending < 1:
        return Slot(free=False, read=read,
                    why=f"pool {pool}: reservation {reservation_id} has {available} free instances and "
                        f"{pending} launches in flight in this healer's groups")
    return Slot(free=True, read=read)

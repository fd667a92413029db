"""`gpufleet schedule lend-init`: the first interruptible allocation of a lending pool.

Training's lent group names the interruptible reservation (``lentReservationId``), which exists
only once the platform account has lent a slot, and the reconcile pass lends only for a pool that
has a lent group. This step breaks the circle: one unused slot of the pool's ODCR is lent
(``CreateInterruptibleCapacityReservationAllocation``) and at once taken back, kept at zero
(``ZeroSizePreference=retain``), so the id survives and nothing runs in it. A second run finds the
allocation and changes nothing; a run stopped between the two calls is finished by the next one
(the slot is taken back while no lent group targets it). Journaled like the pass's lending steps:
under the pool's lease (kind ``lend``), an intent before the EC2 calls and the result after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.schedule.lend_pass import LendStep
from gpufleet.automation.schedule.lending import Allocation, lend_step, read_allocation
from gpufleet.infra.errors import BadInputError, ConfigError, ConflictError
from gpufleet.infra.model import StackSpec


@dataclass(frozen=True, kw_only=True)
class LendInit:
    """What ``lend-init`` found or did."""

    pool: str
    """The lending pool."""
    source_id: str
    """Its ODCR, lent from."""
    action: str
    """created | finished (a first run stopped halfway: its slot taken back) | exists | would-create | would-finish."""
    lent_id: str | None
    """The interruptible reservation (None only in a dry run that would create it)."""
    lent: int
    """Slots lent now (0 once kept at zero; EC2 may still be ``updating`` toward it)."""
    status: str
    """The allocation's status as EC2 reports it."""
    stack_file: str
    """The training stack file whose lent group names ``lentReservationId``."""
    group: str | None
    """That group, when the stack file already has one for the pool."""
    group_lent_id: str | None
    """The id that group names now (the line is to add only where it differs)."""
    max_nodes: int
    """The schedule's ``lend.maxNodes``: the lent group's ``maxNodes`` at most."""
    line: str | None
    """The stack-file line to add under the lent group."""
    op_id: str | None = None
    """The journaled step (``ln-...``); None when nothing was called."""


@dataclass(frozen=True, kw_only=True)
class LendTarget:
    """The checked input: a pool whose schedule lends, and where its lent group lives."""

    pool: str
    source_id: str
    """The pool's ODCR."""
    stack_file: str
    """The training stack file."""
    group: str | None
    """Its group with ``lentReservationId`` for the pool, if any."""
    group_lent_id: str | None
    """The id that group names."""
    max_nodes: int
    """The schedule's ``lend.maxNodes`` (the lent group's ``maxNodes`` at most)."""


def check(inventory: FleetInventory, inventory_source: str, specs: list[StackSpec], pool: str) -> LendTarget:
    """Exit 2 (nothing called) unless ``pool`` is an ODCR pool whose schedule lends."""
    platform = next((s for s in specs if s.role.value == "platform"), None)
    if platform is None:
        raise BadInputError("the stack files hold no platform stack", "pass --stacks-dir with Pulumi.platform.yaml")
    names = [p.name for p in platform.pools]
    if pool not in names:
        raise ConfigError(platform.source, "gpufleet:pools", pool, "no such pool", f"pools: {', '.join(names)}")
    index, schedule = next(((i, s) for i, s in enumerate(platform.schedule) if s.pool == pool), (None, None))
    if schedule is None:
        raise ConfigError(platform.source, "gpufleet:schedule", pool, "the pool has no schedule, so nothing lends it",
                          "add a gpufleet:schedule entry with lend (maxNodes), see docs/schedule.md")
    if schedule.lend is None:
        raise ConfigError(platform.source, f"gpufleet:schedule[{index}].lend", None,
                          f"pool {pool}'s schedule does not lend (no lend, or enabled: false)",
                          "add lend: {maxNodes: N} to it")
    try:
        out = inventory.pool(pool)
    except KeyError:
        raise ConfigError(inventory_source, "pools", pool, "no such pool in the inventory",
                          "refresh it (gpufleet inventory refresh) after the platform stack's update") from None
    if out.kind != "odcr" or not out.reservation_id:
        raise ConfigError(inventory_source, f"pools[{pool}].kind", out.kind,
                          "EC2 lends only slots of an On-Demand Capacity Reservation without an end date "
                          "(a Capacity Block ends, an on-demand pool holds no reservation)")
    training = next((s for s in specs if s.role.value == "training"), None)
    group = next((g for g in (training.node_groups if training else ()) if g.pool == pool and g.lent_reservation_id),
                 None)
    return LendTarget(pool=pool, source_id=out.reservation_id, max_nodes=schedule.lend.max_nodes,
                      stack_file=training.source if training else "Pulumi.training.yaml",
                      group=group.name if group else None, group_lent_id=group.lent_reservation_id if group else None)


def lend_init(target: LendTarget, inventory: FleetInventory, ec2: Any, journal: Journal | None, *,
              execute: bool) -> LendInit:
    """Find or make the pool's interruptible allocation, kept at zero; ``journal``: None only in a dry run."""
    # a group in the inventory or in the stack file names it: the pass lends it from now on
    targeted = {g.group.lent_reservation_id for g in inventory.groups_of("training", target.pool)} | {target.group_lent_id}
    now = read_allocation(ec2, target.source_id)
    todo = _todo(target, now, targeted)
    if todo == "exists" or not execute:
        return _result(target, now, todo if todo == "exists" else f"would-{todo}")
    if journal is None:
        raise ValueError("a journal is needed to execute")
    lease = LendStep.acquire(journal, target.pool)
    try:
        now = read_allocation(ec2, target.source_id)  # again under the lease: another caller may have made it
        todo = _todo(target, now, targeted)
        if todo == "exists":
            return _result(target, now, todo)
        lease.intent({"call": "lend_init", "pool": target.pool, "source": target.source_id, "lent_id": now.lent_id})
        if todo == "create":
            lend_step(ec2, target.source_id, 1, training=0)
        kept = lend_step(ec2, target.source_id, 0, training=0)
        done = read_allocation(ec2, target.source_id)
        lease.result({"call": "lend_init", "pool": target.pool, "action": kept.action, "before": kept.before,
                      "after": kept.after, "lent_id": done.lent_id})
    finally:
        lease.release()
    return _result(target, done, "created" if todo == "create" else "finished", op_id=lease.op_id)


def _todo(target: LendTarget, now: Allocation, targeted: set[str | None]) -> str:
    """exists | create | finish (a first run stopped between EC2's create and the reclaim: a slot
    lent, no instance in it, no lent group naming it)."""
    if now.lent_id is None:
        if now.available < 1:
            raise ConflictError(f"pool {target.pool}: {target.source_id} has no unused slot, and the first "
                                "allocation lends one (then keeps it at zero)",
                                "move a node back to the reservation (gpufleet rebalance --to released), then run again")
        return "create"
    return "finish" if now.lent > 0 and now.used == 0 and now.lent_id not in targeted else "exists"


def _result(target: LendTarget, now: Allocation, action: str, op_id: str | None = None) -> LendInit:
    line = f"lentReservationId: {now.lent_id}" if now.lent_id else None
    return LendInit(pool=target.pool, source_id=target.source_id, action=action, lent_id=now.lent_id,
                    lent=now.lent, status=now.status, stack_file=target.stack_file, group=target.group,
                    group_lent_id=target.group_lent_id, max_nodes=target.max_nodes, line=line,
                    op_id=op_id)

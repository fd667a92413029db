"""Lending a pool's idle inference slots to training through an interruptible capacity reservation,
the part of the one decision (``decide``) for a pool whose schedule has ``lend``.

EC2's primitive (docs: "Interruptible Capacity Reservations"): the owner of an On-Demand Capacity
Reservation without an end date lends unused slots of it as an interruptible reservation
(CreateInterruptibleCapacityReservationAllocation) and takes them back with
UpdateInterruptibleCapacityReservationAllocation; instances still running in reclaimed slots get
a warning and are terminated two minutes later. So a reclaim starts one drain (the checkpoint) plus
the warning plus the lead time before a window opens: training checkpoints and drains first, the
allocation shrinks, EC2's two minutes pass on drained nodes, and inference boots into the slots.

The split: training keeps its own nodes (in the shared reservation, at least its floor); idle
inference slots are lent first (up to ``lend.max_nodes``), and only what cannot be lent grows
training's own group. Inference is served from lent slots first (reclaimed), then from training's
own nodes, as without lending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from gpufleet.automation.schedule import plan
from gpufleet.automation.schedule.model import Move, PoolFleet, PoolTarget, Side
from gpufleet.infra.model import PoolSchedule

RECLAIM_WARNING = dt.timedelta(minutes=2)
"""EC2's interruption warning: a reclaimed slot's instance is terminated this long after it."""


def reclaim_ahead(schedule: PoolSchedule) -> dt.timedelta:
    """How far before inference needs them lent slots are reclaimed: drain, warning, lead time."""
    return plan.lead(schedule) + RECLAIM_WARNING


def lend_pool(now: dt.datetime, schedule: PoolSchedule, pool: PoolFleet, wanted: int, reason: str,
              scheduled: int, arriving: Mapping[Side, int]) -> tuple[PoolTarget, list[Move]]:
    """The target and the moves of a lending pool, given the inference ``wanted`` now."""
    assert schedule.lend is not None
    usable = pool.usable
    inference = pool.inference + arriving[Side.INFERENCE]
    own = pool.training + arriving[Side.TRAINING]
    lent = pool.lent + arriving[Side.LENT]
    free = usable - inference - own - lent
    # what inference will need by the time a reclaim started now has put nodes in its slots
    most = max(0, usable - schedule.training_floor)
    guarded = min(most, max(wanted, plan.level_ahead(schedule, now, reclaim_ahead(schedule))))
    training = usable - wanted
    own_target = min(training, max(own, training - schedule.lend.max_nodes, schedule.training_floor))
    lent_target = max(0, min(schedule.lend.max_nodes, usable - guarded - own_target))

    moves: list[Move] = []

    def order(source: Side, dest: Side, n: int) -> int:
        if n > 0:
            moves.append(Move(pool=pool.pool, source=source, dest=dest, nodes=n))
        return max(0, n)

    idle_lent, idle_own = pool.lent, pool.training  # running, not arriving: what a move can take
    if lent > lent_target:
        n = min(lent - lent_target, idle_lent)
        into = order(Side.LENT, Side.INFERENCE, min(n, max(0, guarded - inference)))
        back = order(Side.LENT, Side.RELEASED, n - into)
        inference, lent, free = inference + into, lent - n, free + back
        reason = f"lend: reclaimed {n} before EC2's warning"
    up = wanted - inference
    if up > 0:
        taken = order(Side.RELEASED, Side.INFERENCE, min(up, max(0, free)))
        free -= taken
        from_own = order(Side.TRAINING, Side.INFERENCE, min(up - taken, idle_own))
        own, idle_own = own - from_own, idle_own - from_own
    elif inference > guarded:
        n = min(inference - guarded, pool.inference)
        to_lent = order(Side.INFERENCE, Side.LENT, min(n, max(0, lent_target - lent)))
        to_own = order(Side.INFERENCE, Side.TRAINING, min(n - to_lent, max(0, own_target - own)))
        free += order(Side.INFERENCE, Side.RELEASED, n - to_lent - to_own)
        lent, own = lent + to_lent, own + to_own
    if free > 0 and lent < lent_target:
        n = order(Side.RELEASED, Side.LENT, min(free, lent_target - lent))
        free, lent = free - n, lent + n
    if free > 0 and own < own_target:
        order(Side.RELEASED, Side.TRAINING, min(free, own_target - own))
    elif own > own_target:
        order(Side.TRAINING, Side.RELEASED, min(own - own_target, idle_own))
    target = PoolTarget(pool=pool.pool, inference=wanted, training=own_target + lent_target, scheduled=scheduled,
                        reason=reason, lent=lent_target)
    return target, moves

"""The decision, as one pure function: no I/O, no clock. The simulator calls it every simulated
minute; the reconciler calls it every pass with what it read, and starts the moves it returns.

Per scheduled pool:
1. the windows' level one lead time ahead (``plan.level_ahead``), raised to a forecast if one is given;
2. reactive: from the inference committed now (serving + arriving - leaving), one step up when the
   signal stayed above ``up_above`` for ``up_minutes``, one step down when it stayed below
   ``down_below`` for ``down_minutes``, else hold (hysteresis); never below the windows' level, never
   above ``max_nodes``; no signal history: the windows alone;
3. bounds: training keeps its floor; the pool's count caps everything;
4. deadlines: a Capacity Block's training is drained (checkpointed) before EC2 starts terminating,
   and inference is never placed on a block that terminates inside the window it would serve;
5. moves: the difference between the target and what is committed, from nodes not already moving;
   a pool that lends its idle inference slots to training (``lend``) splits training in two (``lend.py``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from gpufleet.automation.schedule import lend, plan
from gpufleet.automation.schedule.model import (
    Deadline,
    Decision,
    Move,
    PoolFleet,
    PoolSignals,
    PoolTarget,
    Side,
)
from gpufleet.infra.model import PoolSchedule, ReactiveRule, ServingSignal

SIDES = tuple(Side)


def decide(now: dt.datetime, schedules: Sequence[PoolSchedule], fleet: Mapping[str, PoolFleet],
           in_flight: Sequence[Move], signals: Mapping[str, PoolSignals],
           deadlines: Mapping[str, Deadline]) -> Decision:
    """Targets and moves for every scheduled pool at the aware instant ``now``."""
    targets: list[PoolTarget] = []
    moves: list[Move] = []
    findings: list[str] = []
    for schedule in schedules:
        pool = fleet.get(schedule.pool)
        if pool is None:
            findings.append(f"pool {schedule.pool}: not in the fleet, nothing decided")
            continue
        flying = [m for m in in_flight if m.pool == schedule.pool]
        target, pool_moves, pool_findings = _decide_pool(now, schedule, pool, flying,
                                                         signals.get(schedule.pool, PoolSignals()),
                                                         deadlines.get(schedule.pool))
        targets.append(target)
        moves.extend(pool_moves)
        findings.extend(pool_findings)
    return Decision(now=now, targets=tuple(targets), moves=tuple(moves), findings=tuple(findings))


def _decide_pool(now: dt.datetime, schedule: PoolSchedule, pool: PoolFleet, flying: Sequence[Move],
                 signals: PoolSignals, deadline: Deadline | None) -> tuple[PoolTarget, list[Move], list[str]]:
    findings: list[str] = []
    arriving = dict.fromkeys(SIDES, 0)
    for move in flying:
        arriving[move.dest] += move.nodes
    inference_now = pool.inference + arriving[Side.INFERENCE]
    ahead = plan.lead(schedule)
    scheduled = plan.level_ahead(schedule, now, ahead)
    wanted, reason = scheduled, "windows"
    if signals.forecast_nodes is not None and math.ceil(signals.forecast_nodes) > wanted:
        wanted, reason = math.ceil(signals.forecast_nodes), "forecast"
    if schedule.reactive is not None:
        step = _reactive_step(schedule.reactive, signals, inference_now)
        if step is not None:
            reactive = min(schedule.reactive.max_nodes, max(0, inference_now + step * schedule.reactive.step))
            if reactive > wanted:
                wanted, reason = reactive, {1: "reactive up", 0: "reactive hold", -1: "reactive down"}[step]
    most = max(0, pool.usable - schedule.training_floor)
    if wanted > most:
        spares = f", keeps {pool.spares} hot spares" if pool.spares else ""
        findings.append(f"pool {schedule.pool}: {wanted} inference nodes wanted at {now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC, "
                        f"the pool holds {pool.count}{spares} and training keeps {schedule.training_floor}")
        wanted = most
    if deadline is None and schedule.lend is not None:
        return (*lend.lend_pool(now, schedule, pool, wanted, reason, scheduled, arriving), findings)
    if deadline is not None:
        wanted, drain, reason = _deadline(now, schedule, deadline, wanted, reason, findings)
        training = 0 if drain else pool.usable - wanted
    else:
        training = pool.usable - wanted
    target = PoolTarget(pool=schedule.pool, inference=wanted, training=training, scheduled=scheduled, reason=reason)
    return target, _moves(schedule.pool, target, pool, arriving), findings


def _reactive_step(rule: ReactiveRule, signals: PoolSignals, nodes: int) -> int | None:
    """+1, -1 or 0 (hold) from the signal's recent samples; None without enough history.

    A step down must also leave the signal, spread over one step fewer nodes, below ``up_above``:
    otherwise the next minutes would step straight back up (and every step up costs a checkpoint
    and a relaunch).
    """
    samples = signals.kv_cache if rule.signal is ServingSignal.KV_CACHE else signals.queue_depth
    if len(samples) < min(rule.up_minutes, rule.down_minutes):
        return None
    if len(samples) >= rule.up_minutes and min(samples[-rule.up_minutes:]) > rule.up_above:
        return 1
    if len(samples) >= rule.down_minutes and nodes > rule.step:
        recent = samples[-rule.down_minutes:]
        if max(recent) < rule.down_below and max(recent) * nodes / (nodes - rule.step) < rule.up_above:
            return -1
    return 0


def _deadline(now: dt.datetime, schedule: PoolSchedule, deadline: Deadline, wanted: int, reason: str,
              findings: list[str]) -> tuple[int, bool, str]:
    """(inference wanted, whether training must be drained now, reason) on a Capacity Block."""
    termination = deadline.termination.astimezone(dt.UTC)
    if now < deadline.start or now >= termination:
        return 0, True, "no capacity (outside the block)"
    for window in schedule.windows:
        for opens, closes in plan.openings(window, now, now + plan.lead(schedule)):
            if opens < termination < closes and window.inference_nodes > schedule.inference_nodes_outside:
                findings.append(f"pool {schedule.pool}: the window {opens:%Y-%m-%d %H:%M}-{closes:%H:%M} UTC cannot "
                                f"be served: the capacity block is terminated from {termination:%H:%M} UTC")
                # nothing moves onto the block for that window; what serves outside it stays until the end
                wanted, reason = min(wanted, schedule.inference_nodes_outside), "deadline: the block ends inside the window"
    # One minute of margin: a pass a minute may run up to a minute late.
    if now >= termination - dt.timedelta(minutes=schedule.drain_minutes + 1):
        return wanted, True, f"deadline: training drained before {termination:%H:%M} UTC"
    return wanted, False, reason


def _moves(pool_name: str, target: PoolTarget, pool: PoolFleet, arriving: Mapping[Side, int]) -> list[Move]:
    """Orders that bring the committed split to the target: free nodes first, then nodes not moving."""
    moves: list[Move] = []
    free = pool.usable - pool.inference - pool.training - sum(arriving.values())
    inference = pool.inference + arriving[Side.INFERENCE]
    training = pool.training + arriving[Side.TRAINING]
    idle_training = pool.training

    def order(source: Side, dest: Side, n: int) -> None:
        if n > 0:
            moves.append(Move(pool=pool_name, source=source, dest=dest, nodes=n))

    up = target.inference - inference
    if up > 0:
        from_free = min(up, max(0, free))
        order(Side.RELEASED, Side.INFERENCE, from_free)
        free -= from_free
        from_training = min(up - from_free, idle_training)
        order(Side.TRAINING, Side.INFERENCE, from_training)
        idle_training -= from_training
        training -= from_training
    elif up < 0:
        n = min(-up, pool.inference)
        to_training = min(n, max(0, target.training - training))
        order(Side.INFERENCE, Side.TRAINING, to_training)
        order(Side.INFERENCE, Side.RELEASED, n - to_training)
        training += to_training
    if target.training > training and free > 0:
        order(Side.RELEASED, Side.TRAINING, min(free, target.training - training))
    elif training > target.training:
        order(Side.TRAINING, Side.RELEASED, min(training - target.training, idle_training))
    return moves

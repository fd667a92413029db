"""The optimum under perfect foresight: exact dynamic programming over (minute, inference nodes).

The model is the simulator's, with every move taking the shortest lead time its distribution
allows, so no policy can do better on either objective (a policy's realised split is a feasible
split of this model, at no lower cost). Objectives, lexicographic: first the least unserved demand,
then the most training net of lost work.

Why a DP over the serving level x(t) is exact: with N nodes, training node-minutes are
sum(N - x(t)) minus the node-minutes spent in transit, and a node's transit is fixed by its
direction (up: drain + boot to serving, departing ``U`` minutes before it serves; down: the training
lead ``D``), so the objective is additive over level changes. Transits in opposite directions never
overlap in an optimum (going down and back up within U + D minutes trains nothing and costs both
transits), so x(t) <= N - floor is the only capacity constraint.
"""

from __future__ import annotations

import math

import numpy as np

from gpufleet.automation.schedule.simulate import Outcome, Setup
from gpufleet.automation.schedule.trace import Trace

TIE = 1e-6
"""Unserved demand ties below this (demand has two decimals: real differences are >= 0.01)."""


def solve(trace: Trace, setup: Setup) -> Outcome:
    """The oracle's outcome over ``trace`` (its split per minute in ``series``)."""
    demand = np.asarray(trace.demand, dtype=float)
    minutes = len(demand)
    live_from, live_to = 0, minutes
    if setup.deadline is not None:
        start_minute = (setup.deadline.start - trace.start).total_seconds() / 60
        end_minute = (setup.deadline.termination - trace.start).total_seconds() / 60
        live_from = max(0, math.ceil(start_minute))
        live_to = max(live_from, min(minutes, math.ceil(end_minute)))
    levels = _levels(demand[live_from:live_to], setup)
    x = np.zeros(minutes, dtype=int)
    x[live_from:live_to] = levels
    n = setup.count
    alive = np.zeros(minutes, dtype=bool)
    alive[live_from:live_to] = True
    up_transit = setup.drain_minutes + setup.inference_lead.shortest
    down_transit = setup.training_lead.shortest
    ups = downs = 0
    transit = 0.0
    prev = setup.initial_inference
    for t in range(live_from, live_to):
        change = int(x[t]) - prev
        if change > 0:
            ups += change
            transit += change * up_transit
        elif change < 0:
            downs -= change
            transit += -change * min(down_transit, live_to - t)
        prev = int(x[t])
    served = np.minimum(demand, x)
    training_minutes = float(np.sum(np.where(alive, n - x, 0))) - transit
    idle = float(np.sum(np.where(alive, x - served, 0))) + transit
    hours = setup.gpus_per_node / 60
    demanded = float(demand.sum())
    unserved = demanded - float(served.sum())
    series = {"demand": demand.tolist(), "inference": x.astype(float).tolist(),
              "training": np.where(alive, n - x, 0).astype(float).tolist()}
    return Outcome(policy="oracle", served_fraction=1.0 if demanded == 0 else (demanded - unserved) / demanded,
                   unserved_node_minutes=unserved, training_gpu_hours=training_minutes * hours,
                   lost_training_gpu_hours=ups * setup.lost_minutes_per_preemption * hours, moves=ups + downs,
                   idle_reserved_gpu_hours=idle * hours, series=series)


def _levels(demand: np.ndarray, setup: Setup) -> np.ndarray:
    """The optimal serving level per minute over a span in which the pool exists."""
    minutes = len(demand)
    top = max(0, setup.count - setup.schedule.training_floor)
    k = np.arange(top + 1)
    start = setup.initial_inference
    up_cost = setup.drain_minutes + setup.inference_lead.shortest + setup.lost_minutes_per_preemption
    up_transit = setup.drain_minutes + setup.inference_lead.shortest
    down_transit = setup.training_lead.shortest
    diff = k[None, :] - k[:, None]  # [from, to]
    up_part = np.where(diff > 0, diff * up_cost, 0.0)
    down_nodes = np.where(diff < 0, -diff, 0)
    # value so far of ending the minute at each level: (unserved node-minutes, net training node-minutes)
    unserved = np.full(top + 1, np.inf)
    training = np.full(top + 1, -np.inf)
    back = np.zeros((minutes, top + 1), dtype=np.int16)
    # before the first minute the split is the initial one
    prev_u = np.full(top + 1, np.inf)
    prev_t = np.full(top + 1, -np.inf)
    prev_u[start] = 0.0
    prev_t[start] = 0.0
    for t in range(minutes):
        stage_u = np.maximum(demand[t] - k, 0.0)
        stage_t = (setup.count - k).astype(float)
        cost = up_part + down_nodes * min(down_transit, minutes - t)
        feasible = np.isfinite(prev_u)[:, None] & ((diff <= 0) | (t >= up_transit))
        cand_u = np.where(feasible, prev_u[:, None], np.inf)
        cand_t = np.where(feasible, prev_t[:, None] - cost, -np.inf)
        best_u = cand_u.min(axis=0)
        ties = cand_u <= best_u[None, :] + TIE
        choice = np.argmax(np.where(ties, cand_t, -np.inf), axis=0)
        back[t] = choice
        unserved = best_u + stage_u
        training = cand_t[choice, k] + stage_t
        prev_u, prev_t = unserved, training
    best_u = unserved.min()
    level = int(np.argmax(np.where(unserved <= best_u + TIE, training, -np.inf)))
    path = np.zeros(minutes, dtype=int)
    for t in range(minutes - 1, -1, -1):
        path[t] = level
        level = int(back[t, level])
    return path

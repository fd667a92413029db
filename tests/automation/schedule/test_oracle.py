"""The oracle: optimal on small cases (checked against every order sequence run through the
simulator itself), and no policy beats it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from gpufleet.automation.schedule.model import Decision, Move, Side
from gpufleet.automation.schedule.oracle import solve
from gpufleet.automation.schedule.policies import Policy
from gpufleet.automation.schedule.simulate import LeadTime, Setup, simulate
from gpufleet.automation.schedule.trace import Trace, TraceKind, TraceShape, synthesize
from tests.automation.schedule.builders import kv_rule, pool_schedule, utc, window

START = utc("2026-03-09T14:00")


def tiny(initial: int, floor: int = 0) -> Setup:
    return Setup(schedule=pool_schedule(outside=0, floor=floor, drain=1), count=2, initial_inference=initial,
                 gpus_per_node=1, inference_lead=LeadTime(low=1, mode=1, high=1),
                 training_lead=LeadTime(low=1, mode=1, high=1), lost_minutes_per_preemption=0.5)


def replay(orders: tuple[int, ...]):
    """A chooser that orders ``orders[m]`` nodes at minute m: +k training -> inference, -k back."""

    def choose(minute, now, pool, flying, signals):
        k = orders[minute]
        moves = ()
        if k > 0:
            moves = (Move(pool="p", source=Side.TRAINING, dest=Side.INFERENCE, nodes=k),)
        elif k < 0:
            moves = (Move(pool="p", source=Side.INFERENCE, dest=Side.TRAINING, nodes=-k),)
        return Decision(now=now, targets=(), moves=moves)

    return choose


def brute_force(trace: Trace, setup: Setup) -> tuple[float, float]:
    """The lexicographic best (least unserved, most net training) over every order sequence."""
    best = None
    for orders in itertools.product(range(-setup.count, setup.count + 1), repeat=len(trace.demand)):
        try:
            o = simulate(trace, setup, Policy.SCHEDULE, replay(orders), keep_series=True)
        except ValueError:  # ordered more nodes than the side holds
            continue
        if max(o.series["inference"]) > setup.count - setup.schedule.training_floor:
            continue  # the training floor binds every policy
        # in node-minutes (one GPU a node), rounded off float noise
        key = (round(o.unserved_node_minutes, 6), -round(o.net_training_gpu_hours * 60, 6))
        best = key if best is None or key < best else best
    assert best is not None
    return best[0], -best[1]


CASES = [
    ((0.0, 0.0, 0.0, 1.5, 2.0, 0.0), 0, 0),  # a window to prepare for
    ((0.0, 0.0, 2.5, 2.5, 0.5, 0.5), 1, 0),  # more than the pool: serve what can be served
    ((1.0, 0.0, 0.0, 0.0, 0.0, 2.0), 1, 1),  # the floor keeps a node training
    ((0.0, 2.0, 2.0, 0.0, 0.0, 0.0), 2, 0),  # give back after the window
    ((0.3, 0.3, 0.3, 0.3, 1.2, 1.2), 1, 0),  # an up move that pays only if the window is long enough
]


@pytest.mark.parametrize(("demand", "initial", "floor"), CASES)
def test_the_oracle_is_optimal_against_every_order_sequence(demand, initial, floor):
    trace = Trace(start=START, demand=demand)
    setup = tiny(initial, floor)
    oracle = solve(trace, setup)
    unserved, training = brute_force(trace, setup)
    assert oracle.unserved_node_minutes == pytest.approx(unserved, abs=1e-9)
    assert oracle.net_training_gpu_hours * 60 == pytest.approx(training, abs=1e-6)


def test_no_policy_beats_the_oracle():
    # more demand in the window than the schedule's 5 nodes: the reactive policies must move too
    trace = synthesize(TraceKind.STEADY, days=2, seed=3, shape=TraceShape(window_nodes=9),
                       start=dt.datetime(2026, 3, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
    setup = Setup(schedule=pool_schedule(window(nodes=5), reactive=kv_rule()), count=16, initial_inference=1, seed=7)
    oracle = solve(trace, setup)
    for policy in (Policy.STATIC, Policy.SCHEDULE, Policy.REACTIVE, Policy.SCHEDULE_REACTIVE, Policy.FORECAST):
        o = simulate(trace, setup, policy)
        assert o.unserved_node_minutes >= oracle.unserved_node_minutes - 1e-6, policy
        if o.unserved_node_minutes <= oracle.unserved_node_minutes + 1e-6:
            assert o.net_training_gpu_hours <= oracle.net_training_gpu_hours + 1e-6, policy

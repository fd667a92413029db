"""A minute-step simulation of one pool under a policy: moves take seeded lead times, draining
training costs a checkpoint, preemption loses work, a Capacity Block ends on time.

Each simulated minute: moves that are due arrive; the block's deadline acts; the policy orders moves
(``decide`` for every policy but static); then the minute is counted (served demand, training,
idle). A node leaving training stops training the minute it is ordered: it drains
(``drain_minutes``), then boots into inference (an inference lead time). A node leaving inference
stops serving at once and trains after a training lead time. A lent node (``lend``) trains like
any other; reclaimed, it drains, then EC2's two-minute warning runs out, then inference boots.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpufleet.automation.schedule.decide import decide
from gpufleet.automation.schedule.lend import RECLAIM_WARNING
from gpufleet.automation.schedule.model import (
    Deadline,
    Decision,
    Move,
    PoolFleet,
    PoolSignals,
    Side,
)
from gpufleet.automation.schedule.policies import Policy, schedule_for, seasonal_forecast
from gpufleet.automation.schedule.trace import Trace
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.model import PoolSchedule


@dataclass(frozen=True, kw_only=True)
class LeadTime:
    """A triangular distribution of minutes (seeded draws, rounded up to whole minutes)."""

    low: float
    """Fastest."""
    mode: float
    """Most likely."""
    high: float
    """Slowest."""

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.mode <= self.high:
            raise BadInputError(f"lead time needs 0 <= low <= mode <= high, got {self.low}, {self.mode}, {self.high}")

    def draw(self, rng: random.Random) -> int:
        if self.low == self.high:
            return math.ceil(self.low)
        return math.ceil(rng.triangular(self.low, self.high, self.mode))

    @property
    def shortest(self) -> int:
        return math.ceil(self.low)


@dataclass(frozen=True, kw_only=True)
class Setup:
    """One pool and how moves behave in it."""

    schedule: PoolSchedule
    """The pool's schedule (windows, floor, lead time, reactive rule)."""
    count: int
    """Nodes in the pool."""
    initial_inference: int
    """Inference nodes at the start (the stack files' split); the rest train."""
    gpus_per_node: int = 8
    """GPUs per node (p5.48xlarge: 8)."""
    inference_lead: LeadTime = LeadTime(low=11, mode=13.5, high=18)
    """From release in training to serving: boot, join, gate, image pull, weights."""
    training_lead: LeadTime = LeadTime(low=3, mode=4, high=6)
    """From release in inference to training: boot, join, gate."""
    lost_minutes_per_preemption: float = 10.0
    """Training node-minutes lost each time a training node is taken (restart, re-shard, warm-up)."""
    checkpoint_interval_minutes: float = 60.0
    """Checkpoint interval: a node killed without a drain loses half of it on average."""
    seed: int = 0
    """Seed of the lead-time draws."""
    deadline: Deadline | None = None
    """The pool's Capacity Block, if it is one."""

    def __post_init__(self) -> None:
        most = self.count - self.schedule.training_floor
        if not 0 <= self.initial_inference <= most:
            raise BadInputError(f"the initial split puts {self.initial_inference} nodes in inference; pool "
                                f"{self.schedule.pool} allows 0 to {most} (count {self.count}, training floor "
                                f"{self.schedule.training_floor})")

    @property
    def drain_minutes(self) -> int:
        return math.ceil(self.schedule.drain_minutes)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a policy achieved over a trace (the JSON of ``schedule simulate``)."""

    policy: str
    """Policy name."""
    served_fraction: float
    """Demand node-minutes served / demanded."""
    unserved_node_minutes: float
    """Demand node-minutes not served."""
    training_gpu_hours: float
    """GPU-hours training ran (before subtracting lost work)."""
    lost_training_gpu_hours: float
    """GPU-hours of training work lost to preemptions and kills."""
    moves: int
    """Nodes moved (each is one terminate + relaunch)."""
    idle_reserved_gpu_hours: float
    """Reserved GPU-hours doing nothing useful: inference above demand, nodes in transit, unused."""
    unplanned_kills: int = 0
    """Training nodes still running when EC2 terminated the block (0 when the deadline was honoured)."""
    served_ratio_to_oracle: float | None = None
    """served_fraction / the oracle's."""
    training_ratio_to_oracle: float | None = None
    """Net training GPU-hours (training - lost) / the oracle's."""
    findings: tuple[str, ...] = ()
    """Windows reported as not servable (first few)."""
    series: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)
    """Per minute: demand, inference, training (for the chart; not in the JSON)."""

    @property
    def net_training_gpu_hours(self) -> float:
        return self.training_gpu_hours - self.lost_training_gpu_hours

    def to_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in (
            "policy", "served_fraction", "unserved_node_minutes", "training_gpu_hours", "lost_training_gpu_hours",
            "moves", "idle_reserved_gpu_hours", "unplanned_kills", "served_ratio_to_oracle",
            "training_ratio_to_oracle", "findings")}
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


Chooser = Callable[[int, dt.datetime, PoolFleet, Sequence[Move], PoolSignals], Decision]
"""(minute, now, the pool now, moves in flight, signals) -> the decision (its moves start now)."""
MAX_FINDINGS = 20

SIGNAL_HISTORY = 30
QUEUE_PER_MISSING_NODE = 16.0
"""Requests waiting per node of unserved demand (the simulated queue-depth signal)."""


def choose_by_policy(policy: Policy, setup: Setup, trace: Trace) -> Chooser | None:
    """The decision function with the inputs ``policy`` gives it; None for the static split."""
    if policy is Policy.STATIC:
        return None
    schedule = schedule_for(policy, setup.schedule, setup.count)
    deadlines = {schedule.pool: setup.deadline} if setup.deadline else {}
    ahead = math.ceil(schedule.lead_time_minutes + schedule.drain_minutes)
    timezone = next((w.timezone for w in setup.schedule.windows), "UTC")

    def choose(minute: int, now: dt.datetime, pool: PoolFleet, flying: Sequence[Move],
               signals: PoolSignals) -> Decision:
        if policy is Policy.FORECAST:
            forecast = seasonal_forecast(trace.demand, trace.start, minute, ahead, timezone)
            signals = PoolSignals(queue_depth=signals.queue_depth, kv_cache=signals.kv_cache, forecast_nodes=forecast)
        return decide(now, [schedule], {pool.pool: pool}, flying, {pool.pool: signals}, deadlines)

    return choose


def simulate(trace: Trace, setup: Setup, policy: Policy, chooser: Chooser | None = None, *,
             keep_series: bool = False) -> Outcome:
    """Run one policy (or an explicit ``chooser``) over the trace."""
    if policy is Policy.ORACLE:
        from gpufleet.automation.schedule.oracle import solve

        return solve(trace, setup)
    if chooser is None:
        chooser = choose_by_policy(policy, setup, trace)
    rng = random.Random(setup.seed)
    name = setup.schedule.pool
    deadline = setup.deadline
    count = setup.count if deadline is None else 0
    inference = setup.initial_inference if deadline is None else 0
    training = setup.count - setup.initial_inference if deadline is None else 0
    lent = 0
    flights: list[tuple[int, Side, int]] = []  # (minute it arrives, side, nodes)
    kv: deque[float] = deque(maxlen=SIGNAL_HISTORY)
    queue: deque[float] = deque(maxlen=SIGNAL_HISTORY)
    unserved = demanded = train_minutes = idle_minutes = lost_minutes = 0.0
    moved = kills = 0
    findings: list[str] = []
    series: dict[str, list[float]] = {"demand": [], "inference": [], "training": []}
    started = False
    for minute, need in enumerate(trace.demand):
        now = trace.at(minute)
        if flights:
            due = [f for f in flights if f[0] <= minute]
            if due:
                flights = [f for f in flights if f[0] > minute]
                for _, side, n in due:
                    inference += n if side is Side.INFERENCE else 0
                    training += n if side is Side.TRAINING else 0
                    lent += n if side is Side.LENT else 0
        if deadline is not None:
            if not started and deadline.start <= now < deadline.termination:
                started, count = True, setup.count
                inference, training = setup.initial_inference, setup.count - setup.initial_inference
            elif started and now >= deadline.termination and count:
                kills += training + lent
                lost_minutes += (training + lent) * setup.checkpoint_interval_minutes / 2
                count = inference = training = lent = 0
                flights = []
        if chooser is not None and count:
            pool = PoolFleet(pool=name, count=count, inference=inference, training=training, lent=lent)
            per_side: dict[Side, int] = {}
            for _, side, n in flights:
                per_side[side] = per_side.get(side, 0) + n
            flying = [Move(pool=name, source=Side.RELEASED, dest=side, nodes=n) for side, n in per_side.items()]
            signals = PoolSignals(queue_depth=tuple(queue), kv_cache=tuple(kv))
            decision = chooser(minute, now, pool, flying, signals)
            for finding in decision.findings:
                if finding not in findings and len(findings) < MAX_FINDINGS:
                    findings.append(finding)
            for move in decision.moves:
                (inference, training, lent), lost, orders = _start(move, setup, rng, minute, (inference, training, lent))
                lost_minutes += lost
                moved += move.nodes if move.dest is not Side.RELEASED else 0
                flights.extend(orders)
        served = min(need, inference)
        demanded += need
        unserved += need - served
        train_minutes += training + lent
        idle_minutes += count - training - lent - served
        kv.append(min(1.0, need / inference) if inference else (1.0 if need > 0 else 0.0))
        queue.append(max(0.0, need - inference) * QUEUE_PER_MISSING_NODE)
        if keep_series:
            series["demand"].append(need)
            series["inference"].append(inference)
            series["training"].append(training + lent)
    hours = setup.gpus_per_node / 60
    return Outcome(policy=str(policy), served_fraction=1.0 if demanded == 0 else (demanded - unserved) / demanded,
                   unserved_node_minutes=unserved, training_gpu_hours=train_minutes * hours,
                   lost_training_gpu_hours=lost_minutes * hours, moves=moved, idle_reserved_gpu_hours=idle_minutes * hours,
                   unplanned_kills=kills, findings=tuple(findings), series=series)


def _start(move: Move, setup: Setup, rng: random.Random, minute: int, sides: tuple[int, int, int]
           ) -> tuple[tuple[int, int, int], float, list[tuple[int, Side, int]]]:
    """Apply a move's start: take its nodes off their side (inference, training, lent), schedule each
    node's arrival."""
    held = dict(zip((Side.INFERENCE, Side.TRAINING, Side.LENT), sides, strict=True))
    lost = 0.0
    if move.source in held:
        if move.nodes > held[move.source]:
            raise ValueError(f"{move} takes more than the {held[move.source]} {move.source} nodes")
        held[move.source] -= move.nodes
    if move.source in (Side.TRAINING, Side.LENT):
        lost = move.nodes * setup.lost_minutes_per_preemption
    drain = setup.drain_minutes if move.source in (Side.TRAINING, Side.LENT) else 0
    if move.source is Side.LENT:
        drain += math.ceil(RECLAIM_WARNING / dt.timedelta(minutes=1))
    if move.dest is Side.INFERENCE:
        orders = [(minute + drain + setup.inference_lead.draw(rng), Side.INFERENCE, 1) for _ in range(move.nodes)]
    elif move.dest in (Side.TRAINING, Side.LENT):
        orders = [(minute + setup.training_lead.draw(rng), move.dest, 1) for _ in range(move.nodes)]
    else:
        orders = [(minute + drain, Side.RELEASED, move.nodes)]
    return (held[Side.INFERENCE], held[Side.TRAINING], held[Side.LENT]), lost, orders

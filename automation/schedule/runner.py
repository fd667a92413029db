"""Wiring of the reconcile pass (AWS clients, journal, gate, signals) and `schedule run`'s loop.

`schedule run` repeats the pass, bounded in passes and time, one every ``interval_s`` of the
decision's clock. With ``speed`` > 1 that clock runs that many times faster than the wall clock
from ``start`` (the sandbox's compressed day: ``--speed 60`` is an hour a minute); the engine's own
timeouts stay on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.auto_scaling import GroupObs
from gpufleet.automation.health.gate import PROBES, gate_choice, make_gate
from gpufleet.automation.health.node_probes import orchestrator_probes
from gpufleet.automation.inventory import FleetInventory, load_inventory
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.automation.rebalance import asg
from gpufleet.automation.rebalance.engine import Executor, Limits
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.schedule.reconcile import PassResult, reconcile_pass
from gpufleet.automation.schedule.signals import PrometheusSource
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.model import PoolSchedule, StackSpec

MAX_PASSES = 100_000


@dataclass(kw_only=True)
class Reconciler:
    """Everything a pass needs, made once (clients are cached across passes)."""

    inventory: FleetInventory
    schedules: tuple[PoolSchedule, ...]
    """The platform stack's gpufleet:schedule."""
    client: Callable[[str, str], Any]
    """(stack, service) -> boto3 client in that stack's account."""
    gate_choice: dict[str, Any]
    """Journaled with every move the scheduler starts."""
    gate: Any
    """The HealthGate of that choice."""
    signals: PrometheusSource | None = None
    limits: Limits = field(default_factory=Limits)
    source: str = ""
    """The inventory file (orchestrator adapters name it in their errors)."""
    owner: str | None = None
    """The journal's identity of this process (None: ``host:pid:start``)."""

    def executor(self) -> Executor:
        journal = Journal(self.client(self.inventory.platform_stack, "dynamodb"), self.inventory.journal_table,
                          owner=self.owner)
        return Executor(self.inventory, self.client, journal,
                        lambda kind, stack: for_group(kind, stack=stack, source=self.source), self.gate,
                        limits=self.limits)

    def desired(self) -> dict[str, int]:
        out = {}
        for g in self.inventory.node_groups:
            if g.group.pool in {s.pool for s in self.schedules}:
                obs: GroupObs = asg.observe(self.client(g.stack, "autoscaling"), g.group.asg_name,
                                            f"{g.stack}/{g.group.asg_name}")
                out[g.group.asg_name] = obs.desired
        return out

    def once(self, now: dt.datetime | None = None) -> PassResult:
        return reconcile_pass(self.inventory, self.schedules, self.executor, self.desired, now=now,
                              signals=self.signals, gate=self.gate_choice)


def platform_schedules(specs: list[StackSpec]) -> tuple[PoolSchedule, ...]:
    platform = next((s for s in specs if s.role.value == "platform"), None)
    if platform is None or not platform.schedule:
        raise BadInputError(f"{platform.source if platform else 'the stack files'}: no gpufleet:schedule",
                            "see docs/schedule.md for the keys")
    return tuple(platform.schedule)


def make_reconciler(inventory_path: Path, specs: list[StackSpec], *, probe: str | None = None,
                    signals_url: str | None = None, clients: Callable[[FleetInventory], Callable[[str, str], Any]] | None = None,
                    limits: Limits | None = None) -> Reconciler:
    """Checks the input first (exit 2, nothing called), then wires AWS (or ``clients``)."""
    if probe is not None and probe not in PROBES:
        raise BadInputError(f"--probe {probe!r}: expected one of {', '.join(PROBES)}")
    if signals_url is not None and not signals_url.startswith(("http://", "https://")):
        raise BadInputError(f"--signals {signals_url!r}: expected an http(s) URL of a Prometheus query API")
    schedules = platform_schedules(specs)
    inventory = load_inventory(inventory_path)
    inference = inventory.groups_of("inference", schedules[0].pool)
    if not inference:
        raise BadInputError(f"{inventory_path}: pool {schedules[0].pool} has no inference node group")
    choice = gate_choice(inventory, inference[0].stack, probe=probe)
    session_for: Callable[[str], Any] = lambda stack: None  # noqa: E731
    signals = PrometheusSource(base_url=signals_url) if signals_url else None
    if clients is None:
        from gpufleet.automation.aws import AwsAccess
        from gpufleet.automation.schedule.signals import amp_query_base

        access = AwsAccess(inventory, operation="schedule reconcile")
        client, session_for = cached_clients(access), access.session
        monitoring = inventory.platform.monitoring
        if signals is None and monitoring is not None:
            session = access.session(inventory.platform_stack)
            endpoint = os.environ.get("AWS_ENDPOINT_URL_AMP") or os.environ.get("AWS_ENDPOINT_URL")
            signals = PrometheusSource(base_url=amp_query_base(monitoring.remote_write_url, endpoint),
                                       region=session.region_name, credentials=session.get_credentials())
    else:
        client = clients(inventory)
    gate = make_gate(choice, session_for, orchestrator_probe=orchestrator_probes(inventory, dcgm_level=choice["dcgmLevel"]))
    return Reconciler(inventory=inventory, schedules=schedules, client=client, gate_choice=choice, gate=gate,
                      signals=signals, limits=limits or Limits(), source=str(inventory_path))


def run(reconciler: Reconciler, *, passes: int, until: dt.datetime | None = None, speed: float = 1.0,
        start: dt.datetime | None = None, interval_s: float = 60.0,
        on_pass: Callable[[PassResult], None] | None = None,
        sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.monotonic) -> list[PassResult]:
    """Pass ``n`` decides for ``start + n * interval_s`` and runs no earlier than ``n * interval_s /
    speed`` wall seconds in, until ``passes`` ran or the clock reached ``until``. A slow pass delays
    the next instead of skipping simulated minutes, so a compressed day sees every step of it."""
    if speed <= 0 or not 1 <= passes <= MAX_PASSES:
        raise BadInputError(f"--speed {speed} / --passes {passes}: expected speed > 0 and 1 to {MAX_PASSES} passes")
    origin = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    began = wall()
    results: list[PassResult] = []
    if not 1 <= interval_s <= 3600:
        raise BadInputError(f"--every {interval_s}: expected 1 to 3600 seconds")
    for n in range(passes):
        now = origin + dt.timedelta(seconds=n * interval_s)
        if until is not None and now >= until:
            break
        result = reconciler.once(now)
        results.append(result)
        if on_pass:
            on_pass(result)
        if n + 1 < passes:
            due = began + (n + 1) * interval_s / speed
            sleep(max(0.0, due - wall()))
    return results

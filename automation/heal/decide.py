"""The healer's decision, pure: observations in, per node leave / reboot / replace out.

``decide(observations, recent, budget, groups, now)``:

1. each node's signals are looked up in the decision table; the most drastic action wins; a
   lasting condition (``not_ready``) counts only once it has lasted its ``after_minutes``;
2. a reboot-class fault on a node the healer rebooted within the window escalates to replace
   (``reboot_failed``); a node whose reboot is under way is left alone;
3. per pool, more than ``pattern_fraction`` of the observed nodes failing at once (and at least
   ``pattern_min_nodes``) is a fleet-wide pattern (a bad driver, a network event, a bad image):
   reported, no fault in that pool acted on (an operator's request is no fault: it neither counts
   nor is held);
4. replacements within the budget: at most ``per_group_per_hour`` / ``per_pool_per_hour`` in the
   window (recent replacements included), and never leaving a group's InService instances below
   its floor (``min_nodes``). What the budget holds back is reported as held, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.automation.heal.decisions import DecisionTable, HealAction, default_table
from gpufleet.automation.health.blast import is_fleet_problem
from gpufleet.infra.errors import BadInputError

ORDER = (HealAction.LEAVE, HealAction.REBOOT, HealAction.REPLACE)


@dataclass(frozen=True, kw_only=True)
class NodeObservation:
    """One node as the healer's sources see it now."""

    node: str
    """The orchestrator's name for it (Slurm NodeName)."""
    instance_id: str
    """Its EC2 instance; empty when no instance id is known (such a node cannot be replaced)."""
    group: str
    """``stack/group`` of its Auto Scaling group."""
    pool: str
    """The platform pool the group draws from."""
    signals: tuple[str, ...] = ()
    """Decision-table signals seen on it (``xid:79``, ``replace_requested``, ...)."""
    not_ready_s: float | None = None
    """How long it has not answered its orchestrator; None when it answers."""
    rebooting: bool = False
    """A reboot is requested or under way."""
    spare: bool = False
    """Held as its pool's hot spare (gated, not serving): a replacement in its group swaps it in."""
    gate_failures: int = 0
    """Newcomers in a row, ending with this node, that failed their gate (from the journal)."""


@dataclass(frozen=True, kw_only=True)
class PastAction:
    """An action the healer took (from its journal)."""

    instance_id: str
    group: str
    pool: str
    action: HealAction
    at: float
    """Epoch seconds."""


@dataclass(frozen=True, kw_only=True)
class HealBudget:
    """Limits on what one healer does."""

    per_group_per_hour: int = 1
    """Replacements per Auto Scaling group in ``window_s``."""
    per_pool_per_hour: int = 2
    """Replacements per pool in ``window_s``."""
    window_s: float = 3600.0
    """The budget's window, and how far back a reboot counts as this fault's reboot."""
    pattern_fraction: float = 1 / 3
    """More than this share of a pool's nodes failing at once is a fleet-wide pattern."""
    pattern_min_nodes: int = 2
    """...and at least this many (one bad node of a small pool is not a pattern)."""
    gate_failures_in_a_row: int = 3
    """A node that is the last of this many newcomers in a row to fail their gate is reported, not
    replaced again (a bad image, launch template or reservation host fails the next one too)."""

    def __post_init__(self) -> None:
        if self.gate_failures_in_a_row < 1:
            raise BadInputError(f"heal budget: gate_failures_in_a_row = {self.gate_failures_in_a_row}: must be 1 or more")
        for key in ("per_group_per_hour", "per_pool_per_hour", "pattern_min_nodes"):
            if getattr(self, key) < 0:
                raise BadInputError(f"heal budget: {key} = {getattr(self, key)}: must be 0 or more")
        if self.window_s <= 0 or not 0 < self.pattern_fraction <= 1:
            raise BadInputError(f"heal budget: window_s = {self.window_s}, pattern_fraction = {self.pattern_fraction}: "
                                "the window must be positive and the fraction in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class GroupState:
    """An Auto Scaling group's size now."""

    in_service: int
    """InService instances."""
    min_nodes: int
    """The floor: a replacement never takes the group below it."""


@dataclass(frozen=True, kw_only=True)
class NodeDecision:
    node: str
    instance_id: str
    group: str
    pool: str
    action: HealAction
    """What the healer does now."""
    reason: str
    """Why (the deciding signal and the table's words, or what held it back)."""
    wanted: HealAction
    """What the signals ask for; differs from ``action`` when the budget or a pattern holds it."""
    signals: tuple[str, ...] = ()
    swap_with: str = ""
    """A replacement: the held spare of the same group admitted in its place (its Slurm node), or
    empty when none is free (the replacement boots a new node)."""
    swap_instance: str = ""
    """That spare's EC2 instance."""

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "instance_id": self.instance_id, "group": self.group, "pool": self.pool,
                "action": str(self.action), "wanted": str(self.wanted), "reason": self.reason,
                "signals": list(self.signals), "swap_with": self.swap_with or None}


@dataclass(frozen=True, kw_only=True)
class HealPlan:
    decisions: tuple[NodeDecision, ...]
    patterns: tuple[str, ...] = field(default_factory=tuple)
    """Fleet-wide patterns reported instead of acted on, one line each."""

    def acting(self) -> list[NodeDecision]:
        return [d for d in self.decisions if d.action is not HealAction.LEAVE]

    def to_dict(self) -> dict[str, Any]:
        return {"decisions": [d.to_dict() for d in self.decisions], "patterns": list(self.patterns)}


def _wanted(obs: NodeObservation, rebooted: bool, table: DecisionTable) -> tuple[HealAction, str]:
    """The most drastic action the node's signals ask for, and why."""
    if obs.rebooting:
        return HealAction.LEAVE, "reboot under way"
    best, why, cause = HealAction.LEAVE, "", ""
    for signal in obs.signals:
        row = table.lookup(signal)
        if not why or ORDER.index(row.action) > ORDER.index(best):
            best, why, cause = row.action, f"{signal}: {row.why}", signal
    if obs.not_ready_s is not None:
        row = table.rows["not_ready"]
        limit = (row.after_minutes or 0) * 60
        if obs.not_ready_s >= limit and ORDER.index(row.action) > ORDER.index(best):
            best, why = row.action, f"not_ready for {obs.not_ready_s / 60:.0f} min (>= {limit / 60:.0f}): {row.why}"
        elif obs.not_ready_s < limit and best is HealAction.LEAVE:
            why = f"not ready for {obs.not_ready_s / 60:.1f} min, under the table's {limit / 60:.0f} min"
    if best is HealAction.REBOOT and rebooted:
        row = table.rows["reboot_failed"]
        best, why = row.action, f"reboot_failed ({cause} again after its reboot): {row.why}"
    return best, why or "healthy"


def decide(observations: Sequence[NodeObservation], recent: Sequence[PastAction], budget: HealBudget,
           groups: Mapping[str, GroupState], now: float, table: DecisionTable | None = None) -> HealPlan:
    """Per node what to do now, within the budget; fleet-wide patterns reported, not acted on."""
    table = table or default_table()
    window = [a for a in recent if now - a.at < budget.window_s]
    rebooted = {a.instance_id for a in window if a.action is HealAction.REBOOT}
    wanted = {o.node: _wanted(o, o.instance_id in rebooted, table) for o in observations}

    patterns: list[str] = []
    held_pools: set[str] = set()
    for pool in sorted({o.pool for o in observations}):
        members = [o for o in observations if o.pool == pool]
        # An operator's request is no fault: it neither makes a pattern nor is held by one.
        failing = [o for o in members if wanted[o.node][0] is not HealAction.LEAVE and not _requested(o)]
        if is_fleet_problem(len(failing), len(members), budget.pattern_fraction, budget.pattern_min_nodes):
            held_pools.add(pool)
            patterns.append(f"pool {pool}: {len(failing)} of {len(members)} nodes failing at once "
                            f"({', '.join(sorted(o.node for o in failing))}): a fleet-wide pattern, reported "
                            "instead of acted on; look for a common cause (driver, image, network, power)")

    by_group = {g: sum(1 for a in window if a.action is HealAction.REPLACE and a.group == g) for g in groups}
    by_pool: dict[str, int] = {}
    for a in window:
        if a.action is HealAction.REPLACE:
            by_pool[a.pool] = by_pool.get(a.pool, 0) + 1
    out_now: dict[str, int] = {}
    # A spare carries no fault and waits on no reboot; the first free one of the group is swapped in.
    spares: dict[str, list[NodeObservation]] = {}
    for o in sorted(observations, key=lambda o: o.node):
        if o.spare and o.instance_id and wanted[o.node][0] is HealAction.LEAVE and o.not_ready_s is None:
            spares.setdefault(o.group, []).append(o)
    decisions = []
    # Requests first, then hardware faults, each by node name: a stable order for a stable budget.
    for obs in sorted(observations, key=lambda o: ("replace_requested" not in o.signals, o.node)):
        want, why = wanted[obs.node]
        action = want
        if want is not HealAction.LEAVE and obs.pool in held_pools and not _requested(obs):
            action, why = HealAction.LEAVE, f"held: fleet-wide pattern in pool {obs.pool} (wanted {want}: {why})"
        elif want is HealAction.REPLACE and "gate_failed" in obs.signals \
                and obs.gate_failures >= budget.gate_failures_in_a_row:
            action, why = HealAction.LEAVE, (f"held: {obs.gate_failures} newcomers in a row failed their gate "
                                             f"(limit {budget.gate_failures_in_a_row}) (wanted replace: {why})")
            patterns.append(f"group {obs.group}: {obs.gate_failures} newcomers in a row failed their gate, the last "
                            f"{obs.node}: reported instead of replaced again; look for a common cause (image, "
                            "launch template, reservation host, the gate's own checks)")
        elif want is HealAction.REPLACE:
            held = _replace_held(obs, budget, groups, by_group, by_pool, out_now)
            if held:
                action, why = HealAction.LEAVE, f"held: {held} (wanted replace: {why})"
            else:
                by_group[obs.group] = by_group.get(obs.group, 0) + 1
                by_pool[obs.pool] = by_pool.get(obs.pool, 0) + 1
                out_now[obs.group] = out_now.get(obs.group, 0) + 1
        elif want is HealAction.REBOOT and not obs.node:
            action, why = HealAction.LEAVE, f"held: no orchestrator node to reboot (wanted reboot: {why})"
        spare = spares.get(obs.group, []).pop(0) if action is HealAction.REPLACE and spares.get(obs.group) else None
        if spare is not None:
            why = f"{why}; swap in spare {spare.node}"
        elif obs.spare and want is HealAction.LEAVE:
            why = "hot spare (held)"
        decisions.append(NodeDecision(node=obs.node, instance_id=obs.instance_id, group=obs.group, pool=obs.pool,
                                      action=action, wanted=want, reason=why, signals=obs.signals,
                                      swap_with=spare.node if spare else "",
                                      swap_instance=spare.instance_id if spare else ""))
    decisions.sort(key=lambda d: d.node)
    return HealPlan(decisions=tuple(decisions), patterns=tuple(patterns))


def _requested(obs: NodeObservation) -> bool:
    return obs.signals == ("replace_requested",)


def _replace_held(obs: NodeObservation, budget: HealBudget, groups: Mapping[str, GroupState],
                  by_group: Mapping[str, int], by_pool: Mapping[str, int], out_now: Mapping[str, int]) -> str:
    if not obs.instance_id:
        return "no EC2 instance id known for this node"
    state = groups.get(obs.group)
    if state is None:
        return f"group {obs.group} is not in the inventory"
    hours = f"{budget.window_s / 3600:g} h"
    if by_group.get(obs.group, 0) >= budget.per_group_per_hour:
        return f"budget: {by_group.get(obs.group, 0)} replacement(s) in {obs.group} in the last {hours} (limit {budget.per_group_per_hour})"
    if by_pool.get(obs.pool, 0) >= budget.per_pool_per_hour:
        return f"budget: {by_pool.get(obs.pool, 0)} replacement(s) in pool {obs.pool} in the last {hours} (limit {budget.per_pool_per_hour})"
    left = state.in_service - out_now.get(obs.group, 0) - 1
    if left < state.min_nodes:
        return f"floor: {obs.group} would have {left} InService instance(s), under its floor of {state.min_nodes}"
    return ""

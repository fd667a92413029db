"""Blast radius of a replacement pass (pure): which failed nodes may be replaced now.

A check that fails on most nodes at once is a fleet problem (an FSx outage, a bad driver rollout),
not a node problem: replacing would cycle the whole fleet and fix nothing. Otherwise at most a
bounded number of nodes per group and per pool go at a time, a group never drops below its floor
(its minimum size) while its replacements come up, and one pass stays in one account unless told.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class Target(Protocol):
    instance_id: str
    stack: str
    asg_name: str
    pool: str


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """The bounds of one pass (see HealthArgs for each)."""

    max_per_group: float
    max_per_pool: float
    both_accounts: bool
    fleet_problem_fraction: float


@dataclass(frozen=True, kw_only=True)
class Selection:
    chosen: tuple[str, ...]
    """Failed instances to replace in this pass."""
    deferred: tuple[str, ...]
    """Failed instances left for a later pass."""
    reasons: tuple[str, ...]
    """Why anything was deferred (one line each)."""
    fleet_problem: str | None = None


def is_fleet_problem(failing: int, observed: int, fraction: float, min_nodes: int = 2) -> bool:
    """More than ``fraction`` of the ``observed`` nodes failing at once, and at least ``min_nodes``
    of them (one bad node of a small group is a node problem). The healer's per-pool pattern too."""
    return failing >= max(min_nodes, 1) and failing > fraction * observed


def allowance(bound: float, size: int) -> int:
    """A count (>= 1) as it is; a fraction of ``size``, rounded down, at least one."""
    return int(bound) if bound >= 1 else max(1, math.floor(bound * size))


def select(targets: Sequence[Target], failed: Sequence[str], floors: Mapping[str, int], bounds: Bounds) -> Selection:
    """``targets``: every node checked; ``failed``: those that failed; ``floors``: ASG name -> minimum size."""
    failed_set = set(failed)
    if is_fleet_problem(len(failed_set), len(targets), bounds.fleet_problem_fraction):
        why = (f"{len(failed_set)} of {len(targets)} nodes failed at once (more than "
               f"{bounds.fleet_problem_fraction:.0%}): a fleet problem (storage, network, a driver rollout); "
               "nothing replaced")
        return Selection(chosen=(), deferred=tuple(sorted(failed_set)), reasons=(why,), fleet_problem=why)
    bad = [t for t in targets if t.instance_id in failed_set]
    reasons: list[str] = []
    stacks = list(dict.fromkeys(t.stack for t in bad))
    if len(stacks) > 1 and not bounds.both_accounts:
        reasons.append(f"failed nodes in {len(stacks)} accounts ({', '.join(stacks)}): replacing only {stacks[0]} "
                       "in this pass (--both-accounts to do all)")
        bad = [t for t in bad if t.stack == stacks[0]]
    group_size = Counter(t.asg_name for t in targets)
    pool_size = Counter(t.pool for t in targets)
    taken_group: dict[str, int] = {}
    taken_pool: dict[str, int] = {}
    chosen: list[str] = []
    for t in bad:
        g, p = taken_group.get(t.asg_name, 0), taken_pool.get(t.pool, 0)
        room_floor = group_size[t.asg_name] - floors.get(t.asg_name, 0)
        if g >= allowance(bounds.max_per_group, group_size[t.asg_name]):
            reasons.append(f"{t.instance_id}: group {t.asg_name} already replaces {g} node(s) this pass")
        elif p >= allowance(bounds.max_per_pool, pool_size[t.pool]):
            reasons.append(f"{t.instance_id}: pool {t.pool} already replaces {p} node(s) this pass")
        elif g >= room_floor:
            reasons.append(f"{t.instance_id}: {t.asg_name} would drop below its floor of {floors.get(t.asg_name, 0)}")
        else:
            chosen.append(t.instance_id)
            taken_group[t.asg_name], taken_pool[t.pool] = g + 1, p + 1
    deferred = tuple(sorted(failed_set - set(chosen)))
    return Selection(chosen=tuple(chosen), deferred=deferred, reasons=tuple(reasons))

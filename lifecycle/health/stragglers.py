"""Straggler detection: which members of a peer group are slow compared with the others.

Pure. Peers are the GPUs of one node, or the nodes of one pool (one figure per node, e.g. its median
GEMM throughput). A member is a straggler when it is both well below the group's median (ratio) and
an outlier by the median absolute deviation (robust z-score), so that one slow device neither hides
in an absolute threshold nor drags the reference down with it, and ordinary noise is not flagged.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

# MAD of a normal distribution is 0.6745 sigma; dividing by it turns MAD into a sigma estimate.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, kw_only=True)
class Straggler:
    member: str
    value: float
    median: float
    """Median of the other members."""
    ratio: float
    """value / median (higher is better)."""
    robust_z: float
    """(value - median) / (1.4826 * MAD of the other members), MAD floored at ``mad_floor`` of the median."""


def find_stragglers(values: Mapping[str, float], *, max_ratio: float, z_threshold: float = 3.5,
                    min_members: int = 3, mad_floor: float = 0.01) -> list[Straggler]:
    """Members whose value (higher is better) is below ``max_ratio`` of their peers' median AND whose
    robust z-score against the peers is below ``-z_threshold``; slowest first.

    Each member is compared with the others only (leave-one-out), so a slow member inflates neither
    the median nor the MAD it is judged by; with four nodes that is the difference between finding
    it and not. MAD is floored at ``mad_floor`` of the median (identical peers, or two of them).
    Fewer than ``min_members`` members: no verdict (with two, which one is the slow one?).
    """
    if len(values) < min_members:
        return []
    found = []
    for member, value in values.items():
        peers = [v for m, v in values.items() if m != member]
        median = statistics.median(peers)
        if median <= 0:
            continue
        mad = statistics.median(abs(v - median) for v in peers)
        scale = MAD_TO_SIGMA * max(mad, mad_floor * median)
        ratio = value / median
        z = (value - median) / scale
        if ratio < max_ratio and z < -z_threshold:
            found.append(Straggler(member=member, value=value, median=median, ratio=ratio, robust_z=z))
    return sorted(found, key=lambda s: s.ratio)

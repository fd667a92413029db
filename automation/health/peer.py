"""The deep tier's peer all-reduce: each new node against a known-good node of its pool.

A new node's own checks cannot see a bad EFA path or a mis-cabled placement: that needs traffic
with another node. Before admission the gate picks a known-good peer (an admitted, healthy node of
the same pool and group, so the same placement), runs a two-node all-reduce between them through
the orchestrator (``probe.allreduce_with``), and grades the newcomer's bus bandwidth against the
catalog's multi-node figure (``expected.py``, ``multinode_busbw_gbps``) and, in the gate, against
the median of the newcomers of its pool. No peer: the check is SKIP with the reason (reported, in
the gate's summary), never a silent pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.lifecycle.health.expected import ModelExpectation
from gpufleet.lifecycle.health.performance import grade
from gpufleet.lifecycle.health.results import Action, CheckResult, NodeReport, Status, Tier

CHECK = "allreduce_peer"
"""The gate's check name for the newcomer + peer all-reduce."""
NODE_CHECK = "allreduce_multinode"
"""What the node entry point calls the all-reduce it measured (node rank 0 = the newcomer)."""


@dataclass(frozen=True, kw_only=True)
class PeerCandidate:
    """A node as the orchestrator sees it, for the choice of a peer."""

    name: str
    """The name the probe reaches it by (instance id or Slurm node name)."""
    pool: str
    """Pool (Slurm partition, EKS pool label): peers share it."""
    group: str
    """Node group (Slurm feature, EKS node group): the same group = the same placement."""
    admitted: bool
    """Passed its gate (no hold reservation / no unverified taint)."""
    healthy: bool
    """Not drained, draining, down, failing or tainted unhealthy."""
    idle: bool = True
    """Running nothing now: preferred (the pair's step needs the node to itself)."""
    aliases: frozenset[str] = frozenset()
    """Other names the gate may know it by (the EC2 instance id of a Slurm node)."""

    def known_as(self, name: str) -> bool:
        return name == self.name or name in self.aliases


def choose_peer(newcomer: str, candidates: Sequence[PeerCandidate],
                exclude: Sequence[str] = ()) -> tuple[PeerCandidate | None, str]:
    """(the peer, '') or (None, why there is none). Never the newcomer itself, another node being
    gated (``exclude``), an unverified node or an unhealthy one; of the rest an idle one first, then by name."""
    me = next((c for c in candidates if c.known_as(newcomer)), None)
    if me is None:
        return None, f"{newcomer} is not known to the orchestrator"
    same = [c for c in candidates if c.pool == me.pool and c.group == me.group and c is not me
            and not any(c.known_as(x) for x in exclude)]
    good = sorted((c for c in same if c.admitted and c.healthy), key=lambda c: (not c.idle, c.name))
    if good:
        return good[0], ""
    unverified = sum(1 for c in same if not c.admitted)
    unhealthy = sum(1 for c in same if c.admitted and not c.healthy)
    return None, (f"no known-good peer in pool {me.pool} group {me.group} "
                  f"({len(same)} other node(s): {unverified} unverified, {unhealthy} unhealthy)")


def skipped(reason: str) -> CheckResult:
    return CheckResult(check=CHECK, status=Status.SKIP, tier=Tier.DEEP, detail=f"peer all-reduce skipped: {reason}")


def peer_result(newcomer_report: NodeReport, peer: str, exp: ModelExpectation | None) -> CheckResult:
    """Grade the all-reduce the newcomer (node rank 0) measured with ``peer`` against the catalog.
    A run that failed or measured nothing fails the newcomer (the peer is known good)."""
    measured = next((r for r in newcomer_report.results if r.check == NODE_CHECK and r.measured is not None), None)
    if measured is None:
        why = next((f"{r.check}: {r.detail}" for r in newcomer_report.failures), "no all-reduce figure in the report")
        return CheckResult(check=CHECK, status=Status.FAIL, tier=Tier.DEEP, detail=f"with peer {peer}: {why}",
                           action=Action.ISOLATE)
    if exp is None:
        return CheckResult(check=CHECK, status=Status.WARN, tier=Tier.DEEP, measured=measured.measured, unit="GB/s",
                           detail=f"with peer {peer}: {measured.measured:.4g} GB/s, no expected figure for "
                           f"{newcomer_report.gpu_model!r}")
    return grade(CHECK, measured.measured, exp.multinode_busbw_gbps, exp, tier=Tier.DEEP, unit="GB/s",
                 what=f"all-reduce busbw with peer {peer}")

"""The deep tier's peer all-reduce: the choice of a known-good peer, the real two-node all-reduce
through the entry point the probes run (torch, gloo, on this host), and its grading in the gate."""

from __future__ import annotations

import pytest

from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.peer import CHECK, NODE_CHECK, PeerCandidate, choose_peer
from gpufleet.automation.health.probe import LocalProbe
from gpufleet.lifecycle.health.results import CheckResult, NodeReport, Status, Tier


def node(name, *, pool="h100", group="h100-az4", admitted=True, healthy=True) -> PeerCandidate:
    return PeerCandidate(name=name, pool=pool, group=group, admitted=admitted, healthy=healthy)


def test_the_peer_is_an_admitted_healthy_node_of_the_same_pool_and_group():
    fleet = [node("i-new", admitted=False), node("i-0drain", healthy=False), node("i-0held", admitted=False),
             node("i-0other-pool", pool="a100"), node("i-0other-group", group="h100-az6"),
             node("i-0new2", admitted=False), node("i-0good")]
    chosen, why = choose_peer("i-new", fleet)
    assert chosen is not None and chosen.name == "i-0good" and why == ""
    # Another node being gated is never the peer, even one that looks admitted.
    assert choose_peer("i-new", [*fleet, node("i-0aaa")], exclude=["i-new", "i-0aaa"])[0].name == "i-0good"


def test_an_idle_peer_comes_before_a_busy_one():
    fleet = [node("i-new", admitted=False), PeerCandidate(name="i-0aaa", pool="h100", group="h100-az4",
                                                           admitted=True, healthy=True, idle=False), node("i-0zzz")]
    assert choose_peer("i-new", fleet)[0].name == "i-0zzz"
    assert choose_peer("i-new", fleet[:2])[0].name == "i-0aaa"  # busy beats none: srun waits for it


def test_the_gate_may_name_nodes_by_instance_id():
    fleet = [PeerCandidate(name="train-h100-i-0new", pool="p", group="g", admitted=False, healthy=True,
                           aliases=frozenset({"i-0new"})),
             PeerCandidate(name="train-h100-i-0two", pool="p", group="g", admitted=True, healthy=True,
                           aliases=frozenset({"i-0two"})),
             PeerCandidate(name="node1", pool="p", group="g", admitted=True, healthy=True)]
    assert choose_peer("i-0new", fleet)[0].name == "node1"
    assert choose_peer("i-0new", fleet, exclude=["i-0new", "i-0two"])[0].name == "node1"
    assert choose_peer("i-0new", fleet[:2], exclude=["i-0new", "i-0two"])[0] is None


def test_no_known_good_peer_says_why():
    fleet = [node("i-new", admitted=False), node("i-0drain", healthy=False), node("i-0held", admitted=False),
             node("i-0good", group="h100-az6")]
    chosen, why = choose_peer("i-new", fleet)
    assert chosen is None
    assert why == "no known-good peer in pool h100 group h100-az4 (2 other node(s): 1 unverified, 1 unhealthy)"
    assert choose_peer("i-gone", fleet) == (None, "i-gone is not known to the orchestrator")


def test_no_peer_is_reported_as_skipped_never_a_silent_pass():
    report = gate(["i-new"], LocalProbe(timeout_s=120, peers=[node("i-new", admitted=False)]), ("deep",))
    (result,) = [r for r in report.nodes[0].report.results if r.check == CHECK]
    assert result.status is Status.SKIP and "no known-good peer in pool h100" in result.detail
    assert report.skipped == {"i-new": result.detail}
    assert report.summary.endswith(f"; i-new: {result.detail}") and report.to_dict()["skipped"] == report.skipped


@pytest.mark.torch
def test_real_two_node_allreduce_with_the_peer_on_this_host():
    pytest.importorskip("torch")
    probe = LocalProbe(timeout_s=300, peers=[node("i-new", admitted=False), node("i-0good")])
    report = gate(["i-new"], probe, ("deep",))
    results = {r.check: r for r in report.nodes[0].report.results}
    peer = results[CHECK]
    assert peer.status is not Status.FAIL, peer.detail
    assert peer.measured > 0 and peer.expected == 0.5 and peer.unit == "GB/s"  # the catalog's cpu row
    assert peer.detail.startswith("all-reduce busbw with peer i-0good: ")
    assert results["dcgm_diag"].status is Status.SKIP  # no dcgmi here; the pair ran without DCGM
    assert report.ok, report.summary


class MeasuredPairs:
    """Nodes at the node boundary: rank 0 of each pair answers the bus bandwidth it measured."""

    max_parallel = 1

    def __init__(self, busbw: dict[str, float], fleet: list[PeerCandidate]) -> None:
        self.busbw, self.fleet, self.pairs = busbw, fleet, []

    def probe(self, name, tiers):
        return NodeReport(node=name, tiers=tuple(tiers), instance_type="p5.48xlarge", gpu_model="H100", results=(
            CheckResult(check="dcgm_diag", status=Status.PASS, tier=Tier.DEEP, detail="level 2: 9 tests"),))

    def peer_candidates(self, nodes):
        return self.fleet

    def allreduce_with(self, name, peer):
        self.pairs.append((name, peer))
        return NodeReport(node=name, tiers=(Tier.DEEP,), instance_type="p5.48xlarge", gpu_model="H100", results=(
            CheckResult(check=NODE_CHECK, status=Status.PASS, tier=Tier.DEEP, measured=self.busbw[name],
                        unit="GB/s"),))


def test_a_slow_pair_below_the_catalogs_figure_fails_the_newcomer():
    fleet = [node("i-new", admitted=False), node("i-0good")]
    probe = MeasuredPairs({"i-new": 150.0}, fleet)  # H100 across EFA: 300 GB/s expected, FAIL below 70 %
    report = gate(["i-new"], probe, ("deep",))
    assert probe.pairs == [("i-new", "i-0good")]
    (reason,) = report.failed["i-new"]
    assert reason == "allreduce_peer: all-reduce busbw with peer i-0good: 150 GB/s = 50% of 300"


@pytest.mark.parametrize(("slow", "fail_pct", "fails"), [(0.91, None, False), (0.91, 8, True), (0.93, 8, False)])
def test_a_newcomer_below_its_pools_median_bus_bandwidth_fails_with_the_phi_threshold(slow, fail_pct, fails):
    new = ["i-0a", "i-0b", "i-0c", "i-0d"]
    fleet = [*(node(n, admitted=False) for n in new), node("i-0good")]
    busbw = {"i-0a": 300.0, "i-0b": 301.0, "i-0c": 299.0, "i-0d": 300.0 * slow}  # all above the catalog's 85 %
    report = gate(new, MeasuredPairs(busbw, fleet), ("deep",), straggler_fail_pct=fail_pct)
    assert ("i-0d" in report.failed) is fails, report.pool_results
    assert set(report.failed) <= {"i-0d"}
    if fails:
        assert report.failed["i-0d"] == ("straggler: allreduce_peer on i-0d: 91% of the median of 4 nodes (z=-6.1)",)  # MAD floored at 1 % of 300


def test_a_newcomer_that_failed_its_own_checks_gets_no_peer_run():
    class Broken(MeasuredPairs):
        def probe(self, name, tiers):
            return NodeReport(node=name, tiers=tuple(tiers), gpu_model="H100", results=(
                CheckResult(check="dcgm_diag", status=Status.FAIL, tier=Tier.DEEP, detail="level 2: PCIe fail"),))

    probe = Broken({}, [node("i-new", admitted=False), node("i-0good")])
    report = gate(["i-new"], probe, ("deep",))
    assert probe.pairs == [] and report.failed["i-new"] == ("dcgm_diag: level 2: PCIe fail",)

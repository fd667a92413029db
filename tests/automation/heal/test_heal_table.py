"""`gpufleet heal`'s table at 80 columns: the node, instance and group whole, every signal name of
REASON whole (folded at spaces), and a WANTED column only where a decision was held back."""

from __future__ import annotations

import re

from gpufleet.automation.cli.heal import _show
from gpufleet.automation.heal.decide import GroupState, HealBudget, NodeObservation, decide
from gpufleet.automation.heal.service import HealReport

NOW = 1_800_000_000.0
GROUP = "training/train-h100"


def obs(node: str, *signals: str) -> NodeObservation:
    return NodeObservation(node=node, instance_id=f"i-{sum(map(ord, node)):017x}", group=GROUP, pool="h100-use1-az4",
                           signals=signals)


def shown(capsys, monkeypatch, budget: HealBudget) -> tuple[str, list]:
    monkeypatch.setenv("COLUMNS", "80")
    nodes = [obs("node1", "xid:13"), obs("node2", "xid:79"), obs("node3", "replace_requested"),
             obs("node4", "row_remap_failure"), *(obs(f"ok{i}") for i in range(16))]  # too few failing for a pattern
    plan = decide(nodes, [], budget, {GROUP: GroupState(in_service=len(nodes), min_nodes=0)}, NOW)
    _show(HealReport(plan=plan, dry_run=True), False)
    return capsys.readouterr().out, list(plan.decisions)


def assert_reads_at_80(text: str, decisions: list, signals_whole: bool = True) -> None:
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80 and "…" not in text, text
    words = {w for line in lines for w in line.split()}
    for d in decisions:
        assert {d.node, d.instance_id, d.group} <= words, (d, text)
        names = re.findall(r"[a-z_]+:[0-9]+|[a-z]+_[a-z_]+", d.reason)
        assert not signals_whole or all(any(name in w for w in words) for name in names), (names, text)


def test_no_decision_held_back_no_wanted_column(capsys, monkeypatch):
    text, decisions = shown(capsys, monkeypatch, HealBudget(per_group_per_hour=5, per_pool_per_hour=5))
    assert all(d.wanted == d.action for d in decisions)
    assert "WANTED" not in text
    assert_reads_at_80(text, decisions)


def test_a_decision_the_budget_holds_back_shows_what_was_wanted(capsys, monkeypatch):
    text, decisions = shown(capsys, monkeypatch, HealBudget(per_group_per_hour=1, per_pool_per_hour=2))
    held = [d for d in decisions if d.wanted != d.action]
    assert held and "WANTED" in text.splitlines()[1]
    # With WANTED, REASON has 13 columns at 80: identifiers stay whole, a long signal name folds.
    assert_reads_at_80(text, decisions, signals_whole=False)

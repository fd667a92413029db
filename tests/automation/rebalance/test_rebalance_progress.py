"""Progress on every wait: the executor reports each poll (what, how many of how many, elapsed of
the timeout) with a UTC timestamp, and the CLI shows it as a live line or as periodic plain lines."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from rich.console import Console

from gpufleet.automation.cli.progress import ProgressView
from gpufleet.automation.health.gate import AcceptAllGate
from gpufleet.automation.orchestrators.base import NoOrchestrator
from gpufleet.automation.rebalance.engine import Executor, Limits, Progress, Waiting
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.plan import MoveRequest
from gpufleet.automation.rebalance.state import MoveState


class JoinOneAPoll(NoOrchestrator):
    """The orchestrator's side (Slurm or Kubernetes, faked at its API): new nodes register one per poll."""

    def __init__(self) -> None:
        self.polls = 0

    def ready(self, instance_ids):
        self.polls += 1
        return set(sorted(instance_ids)[: self.polls - 1])


@pytest.mark.emulator
def test_a_wait_reports_each_poll_with_a_timestamp(fleet):
    orch = JoinOneAPoll()
    journal = Journal(fleet.client("platform", "dynamodb"), fleet.inventory.journal_table, owner="test")
    seen: list[Progress] = []
    ex = Executor(fleet.inventory, fleet.client, journal, lambda kind, stack: orch, AcceptAllGate(),
                  limits=Limits(poll_s=0.05, max_poll_s=0.05, acquire_timeout_s=20, join_timeout_s=30),
                  on_progress=seen.append)
    op = ex.run(ex.start(ex.plan(MoveRequest(from_role="training", to_role="inference", nodes=2))))
    assert op.state is MoveState.DONE

    for p in seen:
        at = datetime.fromisoformat(p.at)
        assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 0, p.at
    joins = [p.waiting for p in seen if p.waiting and p.waiting.what.endswith("to join none")]
    assert [(w.done, w.total) for w in joins] == [(0, 2), (1, 2)]
    assert all(w.timeout_s == 30 for w in joins)
    assert joins[0].elapsed_s <= joins[1].elapsed_s < 30
    assert any(p.waiting is None and p.state == "JOINED" for p in seen)


def events(*waits: tuple[int, float]) -> list[Progress]:
    out = [Progress(op_id="rb-1", state="RELEASED", message="released 2 node(s)", at="2026-12-01T10:00:00+00:00")]
    for done, elapsed in waits:
        out.append(Progress(op_id="rb-1", state="RELEASED", message="waiting", at="2026-12-01T10:00:01+00:00",
                            waiting=Waiting(what="2 new InService instance(s) in inference/serve", elapsed_s=elapsed,
                                            timeout_s=900, done=done, total=2, brief="InService in inference")))
    out.append(Progress(op_id="rb-1", state="ACQUIRED", message="2 new node(s) InService", at="2026-12-01T10:02:11+00:00"))
    return out


def test_without_a_terminal_waits_are_periodic_plain_lines():
    out = io.StringIO()
    now = [0.0]
    view = ProgressView(Console(file=out, width=80, force_terminal=False), plain_every_s=30, clock=lambda: now[0])
    for p, t in zip(events((0, 1.0), (1, 20.0), (1, 40.0), (1, 130.0)), [0, 1, 20, 40, 130, 131], strict=True):
        now[0] = t
        view(p)
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("10:00:00 RELEASED") and lines[-1].startswith("10:02:11 ACQUIRED")
    waits = [line for line in lines if "InService in inference" in line]
    # the first at once, then one per 30 s: t=1, t=40 (20 is too soon), t=130
    assert [w.split(None, 2)[2] for w in waits] == ["0/2 InService in inference, 1.0s of 15m",
                                                   "1/2 InService in inference, 40.0s of 15m",
                                                   "1/2 InService in inference, 2m10s of 15m"]


def test_on_a_terminal_a_wait_is_one_line_updated_in_place():
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=80, force_terminal=True), plain_every_s=30)
    for p in events((0, 1.0), (1, 130.0))[:-1]:
        view(p)
    assert view._status is not None and str(view._status.status) == "RELEASED 1/2 InService in inference, 2m10s of 15m"
    view(events()[-1])  # the next step ends the wait's line
    assert view._status is None
    text = out.getvalue()
    assert "RELEASED" in text and "ACQUIRED" in text

"""Progress that fits the terminal: a real sandbox move through the CLI at COLUMNS=80 without a
terminal writes no stderr line wider than 80, and the detail the lines leave out (the Auto Scaling
group's name, instance ids, the gate's peer notes) is in `rebalance show OP --json`."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.cli.progress import ProgressView
from gpufleet.automation.rebalance.engine import Progress, Waiting

runner = CliRunner()


def cli(sandbox, *args: str):
    return runner.invoke(app, [*args, "--inventory", str(sandbox.inventory)], env={"COLUMNS": "80"})


def test_a_move_at_80_columns_fits_and_keeps_its_detail_in_the_journal(sandbox):
    status = json.loads(cli(sandbox, "status", "--json").stdout)
    asg = {g["name"]: g["asg_name"] for g in status["node_groups"]}
    moved = cli(sandbox, "rebalance", "--from", "training", "--to", "inference", "--nodes", "2", "-y", "--probe", "local")
    assert moved.exit_code == 0, moved.output
    lines = moved.stderr.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    states = [line.split()[1] for line in lines if line[:2].isdigit()]
    assert states == ["PLANNED", "LOCKED", "CHECKPOINTING", "DRAINED", "RELEASED", "ACQUIRED", "ACQUIRED", "HEALTHY",
                      "JOINED", "DONE"], moved.stderr
    assert all("h100-use1-az4" in line for line in lines if line[:2].isdigit())  # the pool on every step
    assert asg["serve-h100"] not in moved.stderr and asg["train-h100"] not in moved.stderr
    op_id = next(line.split()[3] for line in lines if " PLANNED " in line)
    assert op_id.startswith("rb-") and "InService in inference" in moved.stderr

    shown = cli(sandbox, "rebalance", "show", op_id, "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert (detail["source"]["asg_name"], detail["dest"]["asg_name"]) == (asg["train-h100"], asg["serve-h100"])
    assert (detail["source"]["name"], detail["dest"]["stack"]) == ("train-h100", "inference")
    assert len(detail["acquired"]) == 2 and len(detail["victims"]) == 2
    assert all(v["instance_id"].startswith("i-") for v in detail["victims"])
    [gate] = detail["gates"]
    assert sorted(gate["passed"]) == sorted(detail["acquired"])
    for node in detail["acquired"]:  # the inference stack gates deep: a peer note per node, said in full
        assert f"{node}: peer all-reduce skipped" in gate["summary"], gate["summary"]
    assert "HEALTHY" in moved.stderr and "notes: rebalance show" in moved.stderr


def render(*events: Progress, width: int = 80) -> list[str]:
    out = io.StringIO()
    now = [0.0]
    view = ProgressView(Console(file=out, width=width, force_terminal=False), clock=lambda: now[0])
    for p in events:
        view(p)
        now[0] += 75.0
    return out.getvalue().splitlines()


ASG = "eks-serve-h100-b7ef9210-d4d6-4b8d-9d2e-9fcd134b0ea4"


def test_a_long_message_folds_at_spaces_and_never_cuts_an_identifier():
    reason = f"rolling back: inference/{ASG}: insufficient capacity: InsufficientInstanceCapacity in use1-az4"
    lines = render(Progress(op_id="rb-1", state="RELEASED", message="released", pool="h100-use1-az4"),
                   Progress(op_id="rb-1", state="ROLLING_BACK", message=reason, pool="h100-use1-az4"))
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines), lines
    assert any(f"inference/{ASG}:" in line for line in lines)  # whole, on one line
    assert " ".join(" ".join(lines[1:]).split()).endswith(f"{reason} +1m15s")  # every word, in order


def test_a_wait_line_counts_in_few_words_within_the_width():
    wait = Waiting(what=f"2 new InService instance(s) in inference/{ASG}", elapsed_s=130, timeout_s=900, done=1,
                   total=2, brief="InService in inference")
    [line] = render(Progress(op_id="rb-1", state="RELEASED", message="w", pool="h100-use1-az4", waiting=wait,
                             at="2026-12-01T10:00:01+00:00"))
    assert line == "10:00:01 RELEASED      h100-use1-az4 1/2 InService in inference, 2m10s of 15m"

"""Text from nodes, files and AWS is printed as text, never read as rich markup. Before, a check
detail such as ``[/]`` raised a MarkupError (a traceback) and ``[bold red]`` restyled the table."""

from __future__ import annotations

from gpufleet.automation.cli import health as health_cli
from gpufleet.automation.health.gate import GateReport, NodeVerdict
from gpufleet.lifecycle.health.results import CheckResult, NodeReport, Status, Tier


def test_node_text_is_printed_literally(monkeypatch):
    tricky = "bad [/] close and [bold red]PASS[/bold red] and [link=http://x]y[/link]"
    result = CheckResult(check="ecc[1]", status=Status.FAIL, detail=tricky, device="[gpu0]")
    report = NodeReport(node="i-[0]", tiers=(Tier.QUICK,), results=(result,), instance_type="p5[x]")
    verdict = NodeVerdict(node="i-[0]", ok=False, status=Status.FAIL, reasons=(tricky,), report=report)
    console = health_cli.console
    # One line per row, so each literal stays whole. Through COLUMNS, which the CLI's consoles read
    # at each print: setting console.width and restoring it froze the next commands' width at 80.
    monkeypatch.setenv("COLUMNS", "400")
    with console.capture() as captured:
        health_cli.render(GateReport(tiers=(Tier.QUICK,), nodes=(verdict,), passed=(),
                                     failed={"i-[0]": (tricky,)}), "health")
    text = captured.get()
    for literal in ("[/] close", "[bold red]PASS[/bold red]", "[link=http://x]y[/link]", "ecc[1]", "[gpu0]", "i-[0]"):
        assert literal in text, literal


def test_a_note_is_literal_and_folds_to_the_terminal(monkeypatch):
    from gpufleet.automation.cli.output import err_console, say

    monkeypatch.setenv("COLUMNS", "80")
    finding = "pool [bold]h100[/bold] " + " ".join(f"word{i}" for i in range(40))
    with err_console.capture() as captured:
        say(finding, label="note: ", style="yellow")
    lines = captured.get().splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines
    assert " ".join(" ".join(lines).split()) == f"note: {finding}"


def test_the_demo_echoes_long_commands_as_continued_lines_a_shell_takes_back():
    import shlex

    from gpufleet.automation.demo import command_lines

    argv = ["gpufleet", "rebalance", "--from", "inference", "--to", "training", "--nodes", "2", "--yes",
            "--probe", "local", "--inventory", ".gpufleet/demo/a folder with spaces/inventory.json"]
    text = command_lines(argv, 70)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 70 for line in lines), lines
    assert all(line.endswith(" \\") for line in lines[:-1])
    assert shlex.split(text[2:].replace("\\\n", "")) == argv
    assert command_lines(["gpufleet", "plan"], 80) == "$ gpufleet plan"

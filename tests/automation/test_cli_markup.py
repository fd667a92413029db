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

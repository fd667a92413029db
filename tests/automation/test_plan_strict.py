"""`gpufleet plan --strict`: the guardrails join the plan's findings; mandatory ones fail the plan
(exit 1) only with --strict, capacity errors always."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.plan import FleetPlan, failing_findings
from gpufleet.infra.findings import Finding

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def finding(rule: str, severity: str) -> Finding:
    return Finding(rule=rule, severity=severity, stack="inference", resource="r", message="m")


def test_reference_fleet_passes_strict_with_only_the_scarce_odcr_warnings():
    result = runner.invoke(app, ["plan", "--stacks-dir", str(REPO / "stacks"), "--strict", "--json"])
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)["findings"]
    assert {(f["rule"], f["severity"], f["resource"]) for f in findings} == {
        ("capacity.scarce-new-odcr", "warning", "h100-use1-az4"),
        ("capacity.scarce-new-odcr", "warning", "h200-use1-az6")}


def test_consumer_alone_gets_an_advisory_that_strict_does_not_fail_on():
    result = runner.invoke(app, ["plan", "--stacks-dir", str(REPO / "stacks"), "--stack", "inference",
                                 "--strict", "--json"])
    assert result.exit_code == 0, result.output
    rules = {(f["rule"], f["severity"]) for f in json.loads(result.stdout)["findings"]}
    assert rules == {("fleet.platform-in-plan", "warning")}


def test_mandatory_guardrail_findings_fail_only_with_strict():
    plan = FleetPlan(stacks=[], pools=[], totals={}, findings=[
        finding("eks.private-endpoint", "error"), finding("fleet.platform-in-plan", "warning"),
        finding("capacity.placement-group-with-reservation", "error")])
    assert [f.rule for f in failing_findings(plan, strict=False)] == ["capacity.placement-group-with-reservation"]
    assert [f.rule for f in failing_findings(plan, strict=True)] == [
        "eks.private-endpoint", "capacity.placement-group-with-reservation"]

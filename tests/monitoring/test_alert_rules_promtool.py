"""The alert rules as Prometheus sees them: promtool checks them, and promtool unit tests
(monitoring/tests/*.yaml) make every alert fire on its fault and stay quiet otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gpufleet.infra import alert_rules
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "rules"
UNIT_TESTS = REPO / "monitoring" / "tests"

pytestmark = pytest.mark.promtool


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_every_rule_file():
    result = promtool("check", "rules", *sorted(str(p) for p in RULES.glob("*.yaml")), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    found = sum(int(line.split()[1]) for line in result.stdout.splitlines() if "SUCCESS:" in line)
    assert found == sum(len(f.expressions) for f in alert_rules.load_rule_files())


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *sorted(p.name for p in UNIT_TESTS.glob("*.yaml")), cwd=UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(list(UNIT_TESTS.glob("*.yaml")))


def test_every_alert_has_a_unit_test_that_fires_it():
    fired = set()
    for path in UNIT_TESTS.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    alerts = {a for f in alert_rules.load_rule_files() for a in f.alerts}
    assert alerts - fired == set(), "alerts no unit test fires"


def test_unit_tests_catch_an_alert_that_no_longer_fires(tmp_path: Path):
    """A broken rule (the XID alert looking for a value DCGM never reports) fails the suite."""
    shutil.copytree(RULES, tmp_path / "rules")
    shutil.copytree(UNIT_TESTS, tmp_path / "tests")
    gpu = tmp_path / "rules" / "gpu.yaml"
    text = gpu.read_text()
    assert "DCGM_FI_DEV_XID_ERRORS == 79" in text
    gpu.write_text(text.replace("DCGM_FI_DEV_XID_ERRORS == 79", "DCGM_FI_DEV_XID_ERRORS == 7900"))
    result = promtool("test", "rules", "gpu_test.yaml", cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "GpuXidCritical" in result.stdout + result.stderr


def test_alertmanager_definition_routes_every_alert_to_the_topic():
    definition = yaml.safe_load(alert_rules.alertmanager_definition("arn:aws:sns:us-east-1:111111111111:alerts",
                                                                    "us-east-1"))
    config = yaml.safe_load(definition["alertmanager_config"])
    assert config["route"]["receiver"] == "sns"
    assert {r["receiver"] for r in config["route"]["routes"]} == {"sns"}
    [receiver] = config["receivers"]
    assert receiver["sns_configs"][0]["topic_arn"] == "arn:aws:sns:us-east-1:111111111111:alerts"
    assert receiver["sns_configs"][0]["sigv4"] == {"region": "us-east-1"}
    severities = {m.split("=")[1].strip('"') for r in config["route"]["routes"] for m in r["matchers"]}
    assert severities <= set(alert_rules.SEVERITIES)

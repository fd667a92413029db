"""The schedule section of the platform stack file: every bad value is exit 2 naming file, key, value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.infra import stackfile
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import DEFAULT_LEAD_TIME_MINUTES, ServingSignal

runner = CliRunner()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_reference_schedule_loads(stacks):
    spec = stackfile.load_stack(stacks / "Pulumi.platform.yaml")
    (schedule,) = spec.schedule
    assert schedule.pool == "h100-use1-az4"
    (w,) = schedule.windows
    assert (w.days, w.start, w.end, w.timezone, w.inference_nodes) == (
        frozenset(range(5)), dt.time(9), dt.time(15), "America/Chicago", 5)
    assert (schedule.inference_nodes_outside, schedule.training_floor, schedule.lead_time_minutes) == (1, 2, 15)
    assert schedule.reactive is not None and schedule.reactive.signal is ServingSignal.KV_CACHE


def test_the_lead_time_defaults_to_boot_join_gate_and_warm_up(stacks):
    edit(stacks / "Pulumi.platform.yaml", "      leadTimeMinutes: 15\n", "")
    (schedule,) = stackfile.load_stack(stacks / "Pulumi.platform.yaml").schedule
    assert schedule.lead_time_minutes == DEFAULT_LEAD_TIME_MINUTES == 13.5


BAD = [
    ("timezone: America/Chicago", "timezone: America/Chicag", "gpufleet:schedule[0].windows[0].timezone",
     "'America/Chicag'", "not an IANA time zone"),
    ('end: "15:00"', 'end: "08:00"', "gpufleet:schedule[0].windows[0].end", "'08:00'", "must be after start"),
    ('end: "15:00"', "end: 15:00", "gpufleet:schedule[0].windows[0].end", "900", "quoted"),
    ('start: "09:00"', 'start: "9am"', "gpufleet:schedule[0].windows[0].start", "'9am'", "HH:MM"),
    ("inferenceNodes: 5", "inferenceNodes: 7", "gpufleet:schedule[0].windows[0].inferenceNodes", "7", "at most 6"),
    ("trainingFloor: 2", "trainingFloor: 9", "gpufleet:schedule[0].trainingFloor", "9", "holds only 8"),
    ("    - pool: h100-use1-az4\n      inferenceNodesOutside", "    - pool: h100-use1-az9\n      inferenceNodesOutside",
     "gpufleet:schedule[0].pool", "'h100-use1-az9'", "no such pool"),
    ("    - pool: h100-use1-az4\n      inferenceNodesOutside", "    - pool: h200-use1-az6\n      inferenceNodesOutside",
     "gpufleet:schedule[0].pool", "'h200-use1-az6'", "not shared with inference"),
    ("days: weekdays", "days: [mon, funday]", "gpufleet:schedule[0].windows[0].days[1]", "'funday'", "expected one of"),
    ("days: weekdays", "days: workdays", "gpufleet:schedule[0].windows[0].days", "'workdays'", "expected one of"),
    ("downBelow: 0.5", "downBelow: 0.95", "gpufleet:schedule[0].reactive.downBelow", "0.95", "hysteresis"),
    ("upAbove: 0.9", "upAbove: 90", "gpufleet:schedule[0].reactive.upAbove", "90", "fraction"),
    ("signal: kvCache", "signal: gpuUtil", "gpufleet:schedule[0].reactive.signal", "'gpuUtil'", "queueDepth, kvCache"),
    ("maxNodes: 6", "maxNodes: 8", "gpufleet:schedule[0].reactive.maxNodes", "8", "at most 6"),
    ("inferenceNodes: 5", "inferenceNode: 5", "gpufleet:schedule[0].windows[0].inferenceNode", "5", "unknown field"),
    ("leadTimeMinutes: 15", "leadTimeMinutes: soon", "gpufleet:schedule[0].leadTimeMinutes", "'soon'", "a number"),
]


@pytest.mark.parametrize(("old", "new", "key", "value", "problem"), BAD, ids=[b[2].split("]", 1)[1] + ":" + b[1][-12:] for b in BAD])
def test_bad_schedule_values_name_file_key_and_value(stacks, old, new, key, value, problem):
    path = stacks / "Pulumi.platform.yaml"
    edit(path, old, new)
    with pytest.raises(ConfigError) as caught:
        stackfile.load_stack(path)
    err = caught.value
    assert (err.source, err.key) == (str(path), key)
    assert f"{key} = {value}" in err.message and problem in err.message + (err.hint or "")
    result = runner.invoke(app, ["schedule", "show", "--stacks-dir", str(stacks)])
    assert result.exit_code == 2
    assert str(path) in result.stderr and key in result.stderr
    assert "Traceback" not in result.output


def test_a_schedule_in_a_consumer_stack_is_refused(stacks):
    path = stacks / "Pulumi.training.yaml"
    path.write_text(path.read_text() + "  gpufleet:schedule: []\n")
    with pytest.raises(ConfigError, match=r"gpufleet:schedule = \[\]: not used by a training stack"):
        stackfile.load_stack(path)


def test_the_schedule_cannot_ask_more_than_the_inference_groups_hold(stacks):
    edit(stacks / "Pulumi.inference.yaml", "maxNodes: 8", "maxNodes: 4")
    specs = [stackfile.load_stack(p) for p in stackfile.discover_stacks(stacks)]
    with pytest.raises(ConfigError) as caught:
        stackfile.check_fleet(specs)
    assert caught.value.key == "gpufleet:schedule[0].windows[0].inferenceNodes" and caught.value.value == 5
    assert caught.value.source.endswith("Pulumi.platform.yaml") and "serve-h100 (4)" in caught.value.message
    for command in (["plan", "--json"], ["schedule", "show"]):
        result = runner.invoke(app, [*command, "--stacks-dir", str(stacks)])
        assert result.exit_code == 2 and "schedule[0].windows[0].inferenceNodes" in result.stderr, command

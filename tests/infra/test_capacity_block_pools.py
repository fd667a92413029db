"""Capacity pools (issue 11, item 8): a Capacity Block carries its window from the stack file to
the outputs and the plan, and a new ODCR of a scarce type gets a plan warning."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from gpufleet.automation.plan import collect_findings
from gpufleet.infra.capacity import tally
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.findings import pool_findings
from gpufleet.infra.model import PoolKind
from gpufleet.infra.offline.render import render_stack
from gpufleet.infra.stackfile import load_stack, parse_stack, read_stack_file

REPO = Path(__file__).resolve().parents[2]
SOURCE = "stacks/Pulumi.platform.yaml"
BLOCK = {"kind": "capacity-block", "reservationId": "cr-0123456789abcdef0",
         "startTime": "2026-03-02T11:30:00Z", "endTime": "2026-03-16T11:30:00Z", "pricePerHourUsd": 31.46}


def platform_config(**pool_changes) -> dict:
    config = copy.deepcopy(read_stack_file(REPO / "stacks" / "Pulumi.platform.yaml"))
    config["gpufleet:pools"][0].update(pool_changes)
    for key, value in list(config["gpufleet:pools"][0].items()):
        if value is None:
            del config["gpufleet:pools"][0][key]
    return config


def parse(config: dict):
    return parse_stack(config, name="platform", source=SOURCE)


def test_a_capacity_block_pool_carries_its_window():
    [block, _] = parse(platform_config(**BLOCK)).pools
    assert block.kind is PoolKind.CAPACITY_BLOCK
    assert (block.start_time, block.end_time) == ("2026-03-02T11:30:00Z", "2026-03-16T11:30:00Z")


def test_yaml_timestamps_load_as_the_same_window(tmp_path):
    path = tmp_path / "Pulumi.platform.yaml"
    text = yaml.safe_dump({"config": platform_config(**BLOCK)}).replace("'2026-03-02T11:30:00Z'", "2026-03-02T11:30:00Z")
    path.write_text(text)
    assert "startTime: 2026-03-02T11:30:00Z" in text  # unquoted: YAML reads a datetime
    assert load_stack(path).pools[0].start_time == "2026-03-02T11:30:00Z"


@pytest.mark.parametrize(("changes", "key", "value", "problem"), [
    ({**BLOCK, "startTime": None}, "startTime", None, "start and an end"),
    ({**BLOCK, "endTime": "2026-03-16T12:00:00Z"}, "endTime", "2026-03-16T12:00:00Z", "11:30 UTC"),
    ({**BLOCK, "endTime": "2026-03-01T11:30:00Z"}, "endTime", "2026-03-01T11:30:00Z", "after startTime"),
    ({**BLOCK, "startTime": "2026-03-02 11:30"}, "startTime", "2026-03-02 11:30", "UTC time"),
    ({**BLOCK, "startTime": "2026-03-02T11:30:00+02:00"}, "startTime", "2026-03-02T11:30:00+02:00", "UTC time"),
    ({"startTime": "2026-03-02T11:30:00Z"}, "startTime", "2026-03-02T11:30:00Z", "only a capacity-block pool"),
])
def test_a_bad_window_names_file_key_and_value(changes, key, value, problem):
    with pytest.raises(ConfigError) as err:
        parse(platform_config(**changes))
    assert (err.value.source, err.value.key, err.value.value) == (SOURCE, f"gpufleet:pools[0].{key}", value)
    assert problem in str(err.value)


def test_the_window_reaches_the_contract_and_the_ledger():
    spec = parse(platform_config(**BLOCK))
    stack = render_stack(spec)
    pools = {p["name"]: p for p in stack.exports["pools"]}
    block = pools["h100-use1-az4"]
    assert (block["kind"], block["startTime"], block["endTime"]) == (
        "capacity-block", "2026-03-02T11:30:00Z", "2026-03-16T11:30:00Z")
    assert block["reservationId"] == "cr-0123456789abcdef0"
    assert pools["h200-use1-az6"]["startTime"] is None
    [usage, _] = tally(spec.pools, ())
    assert (usage.start_time, usage.end_time) == ("2026-03-02T11:30:00Z", "2026-03-16T11:30:00Z")
    assert not stack.of_type("aws:ec2/capacityReservation:CapacityReservation") or all(
        "h100" not in r.name for r in stack.of_type("aws:ec2/capacityReservation:CapacityReservation"))


def test_a_new_odcr_of_a_scarce_type_is_a_plan_warning_and_adopting_one_is_not():
    reference = parse(platform_config())
    warned = {f.resource: f for f in pool_findings([reference])}
    assert set(warned) == {"h100-use1-az4", "h200-use1-az6"}  # p5 and p5en, both created anew
    finding = warned["h100-use1-az4"]
    assert (finding.rule, finding.severity) == ("capacity.scarce-new-odcr", "warning")
    assert "reservationId" in finding.message and "Capacity Block" in finding.message
    adopted = parse(platform_config(reservationId="cr-0123456789abcdef0"))
    assert {f.resource for f in pool_findings([adopted])} == {"h200-use1-az6"}
    block = parse(platform_config(**BLOCK))
    assert {f.resource for f in pool_findings([block])} == {"h200-use1-az6"}
    not_scarce = dataclasses.replace(reference, pools=tuple(
        dataclasses.replace(p, instance_type="g6e.48xlarge") for p in reference.pools))
    assert pool_findings([not_scarce]) == []
    assert {f.rule for f in collect_findings([reference], [])} >= {"capacity.scarce-new-odcr"}

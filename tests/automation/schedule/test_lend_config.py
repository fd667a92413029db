"""The schedule's ``lend`` key: only on an ODCR (no end date), bounded, exit 2 naming file, key, value."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.infra import stackfile
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import LendRule
from tests.automation.schedule.test_schedule_config import edit

runner = CliRunner()
LEND = "      trainingFloor: 2\n      lend:\n        maxNodes: 4\n"


def test_lending_loads_on_an_odcr_pool(stacks):
    path = stacks / "Pulumi.platform.yaml"
    edit(path, "      trainingFloor: 2\n", LEND)
    (schedule,) = stackfile.load_stack(path).schedule
    assert schedule.lend == LendRule(max_nodes=4)
    edit(path, "        maxNodes: 4\n", "        maxNodes: 4\n        enabled: false\n")
    assert stackfile.load_stack(path).schedule[0].lend is None


BAD = [
    ("maxNodes: 4\n", "maxNodes: 7\n", "gpufleet:schedule[0].lend.maxNodes", "7", "at most 6 can be lent"),
    ("maxNodes: 4\n", "maxNodes: 0\n", "gpufleet:schedule[0].lend.maxNodes", "0", "at least 1"),
    ("maxNodes: 4\n", "maxNodes: 4\n        enabled: yes please\n", "gpufleet:schedule[0].lend.enabled",
     "'yes please'", "true or false"),
    ("maxNodes: 4\n", "maxNode: 4\n", "gpufleet:schedule[0].lend.maxNode", "4", "unknown field"),
]


@pytest.mark.parametrize(("old", "new", "key", "value", "problem"), BAD, ids=[b[2].rsplit(".", 1)[1] + b[3] for b in BAD])
def test_bad_lend_values_name_file_key_and_value(stacks, old, new, key, value, problem):
    path = stacks / "Pulumi.platform.yaml"
    edit(path, "      trainingFloor: 2\n", LEND)
    edit(path, old, new)
    with pytest.raises(ConfigError) as caught:
        stackfile.load_stack(path)
    err = caught.value
    assert (err.source, err.key) == (str(path), key)
    assert f"{key} = {value}" in err.message and problem in err.message + (err.hint or "")


def test_a_capacity_block_pool_cannot_lend(stacks):
    path = stacks / "Pulumi.platform.yaml"
    edit(path, "      trainingFloor: 2\n", LEND)
    edit(path, "      count: 8\n      kind: odcr\n",
         "      count: 8\n      kind: capacity-block\n      reservationId: cr-0123456789abcdef0\n"
         "      startTime: 2026-03-02T11:30:00Z\n      endTime: 2026-03-16T11:30:00Z\n      pricePerHourUsd: 31.46\n")
    with pytest.raises(ConfigError) as caught:
        stackfile.load_stack(path)
    err = caught.value
    assert (err.source, err.key) == (str(path), "gpufleet:schedule[0].lend")
    assert "capacity-block: a Capacity Block has an end date" in err.message
    result = runner.invoke(app, ["schedule", "show", "--stacks-dir", str(stacks)])
    assert result.exit_code == 2 and "gpufleet:schedule[0].lend" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output

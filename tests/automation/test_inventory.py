"""The inventory file: every stack's outputs through the contract, versioned, checked as a fleet."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gpufleet.automation.inventory import (
    FleetInventory,
    StackSource,
    from_doc,
    load_inventory,
    write_inventory,
)
from gpufleet.infra.errors import ConfigError

GROUP = {"name": "train", "pool": "h100", "instanceType": "p5.48xlarge", "asgName": "train-asg", "minNodes": 0,
         "maxNodes": 8, "initialNodes": 5, "orchestrator": "slurm", "cluster": "training",
         "asgTags": {"gpufleet:node-group": "train"}}
DOC = {
    "version": 1, "collectedAt": "2025-06-01T08:00:00Z",
    "stacks": {
        "platform": {"version": 1, "role": "platform", "accountId": "111111111111", "region": "us-east-1",
                     "journalTable": "journal", "pools": [{"name": "h100", "instanceType": "p5.48xlarge",
                                                           "azId": "use1-az4", "count": 8, "kind": "odcr",
                                                           "reservationId": "cr-0123456789abcdef0"}]},
        "training": {"version": 1, "role": "training", "accountId": "222222222222", "region": "us-east-1",
                     "operatorRoleArn": "arn:aws:iam::222222222222:role/gpufleet-operator", "externalId": "x",
                     "nodeGroups": [GROUP]},
    },
    "sources": {"platform": {"kind": "s3", "location": "s3://b/.pulumi/stacks/gpufleet/platform.json",
                             "updatedAt": "2025-06-01T07:00:00.5+00:00"},
                "training": {"kind": "outputs", "location": "training.json", "updatedAt": None}},
}


def test_reads_every_stack_through_the_contract():
    inventory = from_doc(DOC, "inv.json")
    assert inventory.platform_stack == "platform" and inventory.journal_table == "journal"
    assert [p.name for p in inventory.pools] == ["h100"] and inventory.pool("h100").count == 8
    [ref] = inventory.groups_of("training", "h100")
    assert (ref.stack, ref.role, ref.group.asg_name, ref.group.initial_nodes) == ("training", "training", "train-asg", 5)
    assert inventory.sources["platform"] == StackSource(kind="s3", location="s3://b/.pulumi/stacks/gpufleet/platform.json",
                                                        updated_at="2025-06-01T07:00:00.5+00:00")
    assert from_doc(inventory.to_dict(), "again").to_dict() == inventory.to_dict()


def broken(edit) -> dict:
    doc = copy.deepcopy(DOC)
    edit(doc)
    return doc


@pytest.mark.parametrize(("edit", "key", "problem"), [
    (lambda d: d.pop("version"), "version", "expected inventory version 1"),
    (lambda d: d.update(version=2), "version", "newer gpufleet"),
    (lambda d: d["stacks"]["training"]["nodeGroups"][0].pop("asgName"), "stacks.training.nodeGroups[0].asgName",
     "missing stack output"),
    (lambda d: d["stacks"]["training"]["nodeGroups"][0].update(maxNodes="8"), "stacks.training.nodeGroups[0].maxNodes",
     "expected an integer"),
    (lambda d: d["stacks"]["platform"].pop("journalTable"), "stacks.platform.journalTable", "missing stack output"),
    (lambda d: d["stacks"]["platform"].update(role="training"), "stacks", "no platform stack"),
    (lambda d: d["stacks"]["training"]["nodeGroups"][0].update(pool="h200"), "stacks.training.nodeGroups[0].pool",
     "no such pool"),
    (lambda d: d["sources"]["training"].update(kind="ftp"), "sources.training", "expected {kind"),
    (lambda d: d.update(collectedAt="yesterday"), "collectedAt", "ISO 8601"),
])
def test_a_malformed_or_partial_inventory_names_file_and_key(edit, key, problem):
    with pytest.raises(ConfigError) as caught:
        from_doc(broken(edit), "inv.json")
    assert (caught.value.source, caught.value.key) == ("inv.json", key), caught.value.message
    assert problem in caught.value.problem


def test_writing_is_atomic_and_leaves_no_temporary_file(tmp_path: Path):
    path = tmp_path / "inv" / "inventory.json"
    inventory = from_doc(DOC, str(path))
    write_inventory(inventory, path)
    assert load_inventory(path).to_dict() == inventory.to_dict()
    unwritable = FleetInventory(stacks={"x": object()})  # type: ignore[dict-item]  # to_dict fails mid-write
    with pytest.raises(AttributeError):
        write_inventory(unwritable, path)
    assert json.loads(path.read_text()) == inventory.to_dict()  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["inventory.json"]

"""The typed stack-file loader: reference stacks load; every rejection names file, key and value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from gpufleet.infra.errors import ConfigError
from gpufleet.infra.stackfile import (
    ClusterKind,
    PoolKind,
    Role,
    load_stack,
    parse_stack,
    read_stack_file,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE = "stacks/Pulumi.test.yaml"


def raw(name: str) -> dict:
    return copy.deepcopy(read_stack_file(REPO / "stacks" / f"Pulumi.{name}.yaml"))


def test_reference_stacks_load():
    platform = load_stack(REPO / "stacks" / "Pulumi.platform.yaml")
    training = load_stack(REPO / "stacks" / "Pulumi.training.yaml")
    inference = load_stack(REPO / "stacks" / "Pulumi.inference.yaml")
    assert (platform.role, training.role, inference.role) == (Role.PLATFORM, Role.TRAINING, Role.INFERENCE)
    assert {p.name: (p.count, p.kind) for p in platform.pools} == {
        "h100-use1-az4": (8, PoolKind.ODCR), "h200-use1-az6": (4, PoolKind.ODCR)}
    assert platform.consumer_accounts == {Role.TRAINING: "222222222222", Role.INFERENCE: "333333333333"}
    assert training.cluster_kind is ClusterKind.SLURM and training.network.enable_nat
    assert training.storage is not None and training.storage.fsx_capacity_gib == 4800
    assert inference.holds_phi and [g.num_nodes for g in inference.node_groups] == [2]


def rejects(config: dict, key: str, value: object, problem: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_stack(config, name="test", source=SOURCE)
    error = caught.value
    assert (error.source, error.key, error.value) == (SOURCE, key, value), error.message
    assert problem in error.problem, error.problem
    assert error.message.startswith(f"{SOURCE}: {key} = {value!r}: ")
    return error


def test_unquoted_account_id_is_refused():
    config = raw("training")
    config["gpufleet:accountId"] = 222222222222
    rejects(config, "gpufleet:accountId", 222222222222, "quoted")


def test_role_arn_in_another_account_is_refused():
    config = raw("training")
    config["gpufleet:deployRoleArn"] = "arn:aws:iam::999999999999:role/deploy"
    rejects(config, "gpufleet:deployRoleArn", "arn:aws:iam::999999999999:role/deploy", "999999999999")


def test_misspelled_key_gets_a_suggestion():
    config = raw("training")
    config["gpufleet:nodeGroup"] = config.pop("gpufleet:nodeGroups")
    error = rejects(config, "gpufleet:nodeGroup", config["gpufleet:nodeGroup"], "unknown key")
    assert error.hint == "did you mean `gpufleet:nodeGroups`?"


def test_key_of_another_role_is_refused():
    config = raw("inference")
    config["gpufleet:pools"] = []
    rejects(config, "gpufleet:pools", [], "not used by a inference stack")


def test_capacity_block_needs_its_reservation_id():
    config = raw("platform")
    config["gpufleet:pools"][0]["kind"] = "capacity-block"
    rejects(config, "gpufleet:pools[0].reservationId", None, "capacity block")


def test_consumer_in_the_platform_account_is_refused():
    config = raw("platform")
    config["gpufleet:consumerAccounts"]["training"] = "111111111111"
    rejects(config, "gpufleet:consumerAccounts.training", "111111111111", "its own account")


def test_pool_outside_the_stacks_azs_is_refused():
    config = raw("platform")
    config["gpufleet:pools"][1]["azId"] = "use1-az1"
    rejects(config, "gpufleet:pools[1].azId", "use1-az1", "not one of the stack's azIds")


def test_node_group_bounds_are_checked():
    config = raw("training")
    config["gpufleet:nodeGroups"][0]["minNodes"] = 6
    rejects(config, "gpufleet:nodeGroups[0].minNodes", 6, "greater than numNodes")


def test_throughput_not_offered_by_fsx_is_refused():
    config = raw("training")
    config["gpufleet:storage"]["fsxThroughputPerTib"] = 200
    rejects(config, "gpufleet:storage.fsxThroughputPerTib", 200, "PERSISTENT_2 allows")


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  gpufleet:role: [platform\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(path)
    assert caught.value.source == str(path) and caught.value.key == "(yaml)"


def test_loader_reads_what_yaml_gives(tmp_path):
    path = tmp_path / "Pulumi.copy.yaml"
    path.write_text(yaml.safe_dump({"config": raw("inference")}))
    assert load_stack(path).account_id == "333333333333"

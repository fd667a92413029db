"""The typed stack-file loader: reference stacks load; every rejection names file, key and value."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import ClusterKind, PoolKind, Role
from gpufleet.infra.stackfile import check_fleet, load_stack, parse_stack, read_stack_file

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
    assert inference.holds_phi and [g.initial_nodes for g in inference.node_groups] == [2]


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


def test_capacity_block_needs_its_purchase_price():
    config = raw("platform")
    config["gpufleet:pools"][0].update(kind="capacity-block", reservationId="cr-0123456789abcdef0")
    rejects(config, "gpufleet:pools[0].pricePerHourUsd", None, "purchase price")
    config["gpufleet:pools"][0]["pricePerHourUsd"] = "31.46"
    rejects(config, "gpufleet:pools[0].pricePerHourUsd", "31.46", "expected a number")
    config["gpufleet:pools"][0]["pricePerHourUsd"] = 0
    rejects(config, "gpufleet:pools[0].pricePerHourUsd", 0, "above 0")
    config["gpufleet:pools"][0]["pricePerHourUsd"] = 31.46
    pool = parse_stack(config, name="test", source=SOURCE).pools[0]
    assert (pool.kind, pool.price_usd_per_hour) == (PoolKind.CAPACITY_BLOCK, 31.46)


def test_only_a_capacity_block_has_a_purchase_price():
    config = raw("platform")
    config["gpufleet:pools"][0]["pricePerHourUsd"] = 31.46
    rejects(config, "gpufleet:pools[0].pricePerHourUsd", 31.46, "only a capacity block")


def test_unused_capacity_is_billed_to_a_consumer_it_is_shared_with():
    config = raw("platform")
    config["gpufleet:pools"][1]["unusedBilledTo"] = "inference"
    rejects(config, "gpufleet:pools[1].unusedBilledTo", "inference", "shared with")
    config["gpufleet:pools"][1]["unusedBilledTo"] = "platform-team"
    rejects(config, "gpufleet:pools[1].unusedBilledTo", "platform-team", "expected one of")
    config["gpufleet:pools"][1]["unusedBilledTo"] = "training"
    assert parse_stack(config, name="test", source=SOURCE).pools[1].unused_billed_to is Role.TRAINING
    config["gpufleet:pools"][1].update(kind="capacity-block", reservationId="cr-0123456789abcdef0",
                                       pricePerHourUsd=40.0)
    rejects(config, "gpufleet:pools[1].unusedBilledTo", "training", "kind odcr")


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
    rejects(config, "gpufleet:nodeGroups[0].minNodes", 6, "greater than initialNodes")


def test_the_old_numnodes_key_says_it_was_renamed():
    config = raw("training")
    group = config["gpufleet:nodeGroups"][0]
    group["numNodes"] = group.pop("initialNodes")
    error = rejects(config, "gpufleet:nodeGroups[0].numNodes", 5, "renamed to initialNodes")
    assert error.hint is not None and "initialNodes: 5" in error.hint


@pytest.mark.parametrize(("fields", "key", "value", "problem"), [
    ({"initialNodes": 0, "maxNodes": 0}, "maxNodes", 0, "at least 1"),
    ({"initialNodes": 0, "maxNodes": ...}, "maxNodes", None, "defaults to initialNodes"),
    ({"initialNodes": 5, "maxNodes": 4}, "maxNodes", 4, "less than initialNodes"),
    ({"initialNodes": 2, "minNodes": 3}, "minNodes", 3, "greater than initialNodes"),
    ({"initialNodes": -1}, "initialNodes", -1, "at least 0"),
    ({"instanceType": "m7i.2xlarge"}, "instanceType", "m7i.2xlarge", "GPU"),
])
def test_node_group_rules_live_in_the_loader(fields, key, value, problem):
    # The first, the second and the last once passed the loader and made a component raise
    # (a traceback, exit 1). ``...``: the key is left out.
    config = raw("inference")
    group = config["gpufleet:nodeGroups"][0]
    group.update(fields)
    for name in [k for k, v in fields.items() if v is ...]:
        del group[name]
    rejects(config, f"gpufleet:nodeGroups[0].{key}", value, problem)


def test_an_on_demand_pool_holds_no_reservation():
    config = raw("platform")
    config["gpufleet:pools"][1].update(kind="on-demand", reservationId="cr-0123456789abcdef0")
    rejects(config, "gpufleet:pools[1].reservationId", "cr-0123456789abcdef0", "on-demand")


def fleet(**edits) -> list:
    configs = {name: raw(name) for name in ("platform", "training", "inference")}
    for name, edit in edits.items():
        edit(configs[name])
    return [parse_stack(c, name=name, source=f"stacks/Pulumi.{name}.yaml") for name, c in configs.items()]


def test_the_fleet_ledger_tallies_initial_sizes():
    ledger = {u.name: u for u in check_fleet(fleet())}
    assert (ledger["h100-use1-az4"].consumers, ledger["h100-use1-az4"].free) == ({"inference": 2, "training": 5}, 1)
    assert (ledger["h200-use1-az6"].consumers, ledger["h200-use1-az6"].free) == ({"training": 4}, 0)


def first_group(**fields):
    return lambda config: config["gpufleet:nodeGroups"][0].update(fields)


@pytest.mark.parametrize(("edits", "source", "key", "value", "problem"), [
    ({"inference": first_group(initialNodes=4)}, "inference", "gpufleet:nodeGroups[0].initialNodes", 4,
     "over-committed: it holds 8 nodes, consumers want 9 (inference 4, training 5)"),
    ({"inference": first_group(pool="h300-nowhere")}, "inference", "gpufleet:nodeGroups[0].pool", "h300-nowhere",
     "no such pool"),
    ({"inference": first_group(maxNodes=9)}, "inference", "gpufleet:nodeGroups[0].maxNodes", 9, "holds only 8"),
    ({"inference": first_group(instanceType="p5en.48xlarge")}, "inference", "gpufleet:nodeGroups[0].instanceType",
     "p5en.48xlarge", "holds p5.48xlarge"),
    ({"inference": first_group(pool="h200-use1-az6", instanceType="p5en.48xlarge", maxNodes=4)}, "inference",
     "gpufleet:nodeGroups[0].pool", "h200-use1-az6", "not shared with inference"),
    ({"training": lambda c: c.update({"gpufleet:accountId": "444444444444",
                                      "gpufleet:deployRoleArn": "arn:aws:iam::444444444444:role/d"})},
     "training", "gpufleet:accountId", "444444444444", "names 222222222222"),
])
def test_what_spans_stack_files_is_checked_by_the_loader_too(edits, source, key, value, problem):
    with pytest.raises(ConfigError) as caught:
        check_fleet(fleet(**edits))
    error = caught.value
    assert (error.source, error.key, error.value) == (f"stacks/Pulumi.{source}.yaml", key, value), error.message
    assert problem in error.problem, error.problem


def test_a_second_platform_stack_is_refused():
    specs = fleet()
    with pytest.raises(ConfigError, match="one platform stack"):
        check_fleet([*specs, dataclasses.replace(specs[0], name="platform2", source="stacks/Pulumi.platform2.yaml")])


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


@pytest.mark.parametrize(("region", "prefix"), [
    ("us-east-1", "use1"), ("us-west-2", "usw2"), ("eu-central-1", "euc1"), ("ap-southeast-2", "apse2"),
    ("ap-northeast-1", "apne1"), ("us-gov-west-1", "usgw1"), ("sa-east-1", "sae1"),
])
def test_az_id_prefix_of_a_region(region, prefix):
    from gpufleet.infra.stackfile import az_id_prefix

    assert az_id_prefix(region) == prefix


def test_an_az_id_of_another_region_is_refused():
    """Caught: usw2-az1 in a us-east-1 stack passed `plan --strict` with 0 findings."""
    config = raw("training")
    config["gpufleet:azIds"] = [*config["gpufleet:azIds"], "usw2-az1"]
    i = len(config["gpufleet:azIds"]) - 1
    rejects(config, f"gpufleet:azIds[{i}]", "usw2-az1", "not an AZ ID of us-east-1")


def test_a_consumer_in_another_region_than_its_pool_is_refused():
    """Caught: a node group in us-west-2 bound to a us-east-1 pool passed with 0 findings."""
    def move(config):
        config["aws:region"] = "us-west-2"
        config["gpufleet:azIds"] = ["usw2-az1", "usw2-az2"]

    with pytest.raises(ConfigError) as caught:
        check_fleet(fleet(inference=move))
    assert (caught.value.source, caught.value.key, caught.value.value) == (
        "stacks/Pulumi.inference.yaml", "aws:region", "us-west-2")
    assert "in us-east-1" in caught.value.problem


def test_a_stack_in_a_region_without_prices_is_not_priced_with_another_regions():
    """Caught: every stack was priced with us-east-1 list prices, whatever its region."""
    from gpufleet.automation.plan import _stack_plan
    from gpufleet.infra.cost import has_prices
    from gpufleet.infra.offline.render import render_fleet

    def move(config):
        config["aws:region"] = "eu-west-1"
        config["gpufleet:azIds"] = ["euw1-az1", "euw1-az2"]
        config["gpufleet:nodeGroups"] = []

    specs = fleet(inference=move)
    [inference] = [r for r in render_fleet([s for s in specs if s.name != "training"]) if r.spec.name == "inference"]
    plan = _stack_plan(inference)
    assert not has_prices("eu-west-1") and has_prices("us-east-1")
    assert plan.priced is False and plan.cost_items == [] and plan.cost_per_hour_usd == 0


def test_the_health_gate_defaults_to_the_probe_where_the_node_lives():
    from gpufleet.infra.model import HealthProbe

    training = parse_stack(raw("training"), name="training", source=SOURCE).health_gate
    inference = parse_stack(raw("inference"), name="inference", source=SOURCE).health_gate
    assert training.probe is inference.probe is HealthProbe.ORCHESTRATOR
    # The PHI account runs the deep tier and fails a node 8 % below its pool's median; elsewhere
    # the quick tier and the catalog's 20 %.
    assert (training.tiers, inference.tiers) == (("quick",), ("quick", "deep"))
    assert (training.straggler_fail_pct, inference.straggler_fail_pct) == (20, 8)


@pytest.mark.parametrize(("gate", "key", "value", "problem"), [
    ({"probe": "ssm"}, "gpufleet:healthGate.probe", "ssm", "holds PHI has no SSM"),
    ({"probe": "carrier-pigeon"}, "gpufleet:healthGate.probe", "carrier-pigeon", "expected one of"),
    ({"tiers": ["quick", "thorough"]}, "gpufleet:healthGate.tiers[1]", "thorough", "expected one of"),
    ({"tiers": []}, "gpufleet:healthGate.tiers", [], "at least one"),
    ({"dcgmLevel": 5}, "gpufleet:healthGate.dcgmLevel", 5, "1 to 4"),
    ({"stragglerFailPct": 100}, "gpufleet:healthGate.stragglerFailPct", 100, "below 100"),
    ({"probes": "ssm"}, "gpufleet:healthGate.probes", "ssm", "unknown field"),
])
def test_health_gate_rules_live_in_the_loader(gate, key, value, problem):
    config = raw("inference")
    config["gpufleet:healthGate"] = gate
    rejects(config, key, value, problem)


def test_ssm_stays_a_choice_where_the_account_allows_it():
    config = raw("training")
    config["gpufleet:healthGate"] = {"probe": "ssm", "tiers": ["quick", "performance"], "stragglerFailPct": 10}
    gate = parse_stack(config, name="training", source=SOURCE).health_gate
    assert (gate.probe.value, gate.tiers, gate.straggler_fail_pct) == ("ssm", ("quick", "performance"), 10)

"""A pool's hot spares in the stack file: validated like every key (file, key, value), and a
column of their own in the ledger, held out of what the consumers get."""

from __future__ import annotations

import dataclasses

import pytest

from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import ClusterKind
from gpufleet.infra.stackfile import check_fleet, parse_stack
from tests.infra.test_stackfile import fleet, raw, rejects


def spares(n: object, pool: int = 0):
    return lambda config: config["gpufleet:pools"][pool].update(spares=n)


def test_spares_default_to_none_and_are_read():
    config = raw("platform")
    assert [p.spares for p in parse_stack(config, name="test", source="stacks/Pulumi.test.yaml").pools] == [0, 0]
    spares(1)(config)
    assert parse_stack(config, name="test", source="stacks/Pulumi.test.yaml").pools[0].spares == 1


@pytest.mark.parametrize(("value", "problem"), [
    (-1, "must be at least 0"), ("2", "expected an integer"), (True, "expected an integer"), (2.5, "expected an integer"),
    (8, "a pool of 8 nodes keeps fewer spares than that"), (9, "fewer spares than that"),
])
def test_bad_spares_name_file_key_and_value(value, problem):
    config = raw("platform")
    spares(value)(config)
    rejects(config, "gpufleet:pools[0].spares", value, problem)


def test_spares_need_the_pool_shared_with_training():
    config = raw("platform")
    config["gpufleet:pools"][0]["shareWith"] = ["inference"]
    spares(1)(config)
    rejects(config, "gpufleet:pools[0].spares", 1, "not shared with training")


def test_the_ledger_holds_spares_apart():
    ledger = {u.name: u for u in check_fleet(fleet(platform=spares(1)))}
    h100 = ledger["h100-use1-az4"]
    assert (h100.consumers, h100.spares, h100.free, h100.used) == ({"inference": 2, "training": 5}, 1, 0, 8)
    assert ledger["h200-use1-az6"].spares == 0


def test_spares_count_in_the_over_commitment():
    with pytest.raises(ConfigError) as caught:
        check_fleet(fleet(platform=spares(2)))
    error = caught.value
    # The group that tips it over is named: 2 spares + training 5 fit in 8, inference's 2 do not.
    assert (error.source, error.key, error.value) == ("stacks/Pulumi.inference.yaml",
                                                      "gpufleet:nodeGroups[0].initialNodes", 2)
    assert "consumers want 7 (inference 2, training 5) and it keeps 2 spares" in error.problem, error.problem


def test_spares_need_a_slurm_or_eks_training_group_of_the_pool():
    specs = fleet(platform=spares(1))
    eks = [dataclasses.replace(s, cluster_kind=ClusterKind.EKS) if s.name == "training" else s for s in specs]
    check_fleet(eks)  # an EKS training group holds them too (automation/heal/kube_spares.py)
    unbound = [dataclasses.replace(s, cluster_kind=ClusterKind.NONE) if s.name == "training" else s for s in specs]
    with pytest.raises(ConfigError) as caught:
        check_fleet(unbound)
    error = caught.value
    assert (error.source, error.key, error.value) == ("stacks/Pulumi.platform.yaml", "gpufleet:pools[0].spares", 1)
    assert "no Slurm- or EKS-run training node group draws from pool h100-use1-az4" in error.problem

"""The control plane's catalog: the bundle's instance facts joined with the planners' prices."""

from __future__ import annotations

from importlib import resources

import pytest

from gpufleet.infra import catalog
from gpufleet.lifecycle import instance_types


def test_every_type_is_the_bundles_row_with_a_price() -> None:
    assert catalog.known_instance_types() == instance_types.known_instance_types()
    for name in catalog.known_instance_types():
        row = catalog.lookup(name)
        facts = instance_types.lookup(name)
        assert {k: v for k, v in vars(row).items() if k != "price_usd_per_hour"} == vars(facts)
        assert row.price_usd_per_hour >= 0
    assert catalog.lookup("p5.48xlarge").price_usd_per_hour == 55.04


def test_the_catalog_reads_the_bundles_file_not_a_copy() -> None:
    assert not resources.files("gpufleet.infra").joinpath("data/instance_types.csv").is_file()
    assert resources.files("gpufleet.lifecycle").joinpath("data/instance_types.csv").is_file()


def test_a_type_without_a_price_or_a_price_without_a_type_is_refused() -> None:
    facts = instance_types.parse("instance_type,gpus,gpu_model,gpu_memory_gib,vcpus,memory_gib,efa_interfaces\n"
                                 "p5.48xlarge,8,H100,80,192,2048,32\nm7i.2xlarge,0,,0,8,32,0\n")
    with pytest.raises(ValueError, match=r"no price for \['m7i.2xlarge'\]"):
        catalog.join(facts, {"p5.48xlarge": 55.04})
    with pytest.raises(ValueError, match=r"prices \['p9.xlarge'\], which lifecycle/data/instance_types.csv"):
        catalog.join(facts, {"p5.48xlarge": 55.04, "m7i.2xlarge": 0.4, "p9.xlarge": 1.0})


@pytest.mark.parametrize(("text", "message"), [
    ("instance_type,price_usd_per_hour\np5.48xlarge,cheap\n", r"prices.csv:2: price_usd_per_hour='cheap'"),
    ("instance_type,price_usd_per_hour\np5.48xlarge,-1\n", r"prices.csv:2: price_usd_per_hour='-1'"),
    ("# note\ninstance_type,price_usd_per_hour\np5.48xlarge,1\np5.48xlarge,2\n", r"prices.csv:4: .*listed twice"),
    ("instance_type,price\np5.48xlarge,1\n", r"prices.csv: header"),
])
def test_bad_price_rows_name_file_line_and_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        catalog.parse_prices(text, source="infra/data/instance_prices.csv")

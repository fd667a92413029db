"""The one capacity tally: desired nodes per role per pool, and what is left."""

from __future__ import annotations

from gpufleet.infra.capacity import Consumer, PoolUsage, tally
from gpufleet.infra.contract import PoolOutput
from gpufleet.infra.model import PoolKind, PoolSpec

H100 = PoolSpec(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", count=8, kind=PoolKind.ODCR)
H200 = PoolOutput(name="h200", instance_type="p5en.48xlarge", az_id="use1-az6", count=4, kind="capacity-block")


def test_sums_every_group_of_a_role_and_leaves_the_rest_free():
    usage = tally([H100, H200], [Consumer(pool="h100", role="training", nodes=3),
                                 Consumer(pool="h100", role="inference", nodes=2),
                                 Consumer(pool="h100", role="training", nodes=2),
                                 Consumer(pool="h200", role="training", nodes=4)])
    assert usage == [
        PoolUsage(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", count=8, kind="odcr",
                  consumers={"inference": 2, "training": 5}, free=1),
        PoolUsage(name="h200", instance_type="p5en.48xlarge", az_id="use1-az6", count=4, kind="capacity-block",
                  consumers={"training": 4}, free=0)]
    assert [u.used for u in usage] == [7, 4]


def test_over_commitment_shows_as_negative_free_and_in_flight_is_kept_apart():
    [usage] = tally([H100], [Consumer(pool="h100", role="training", nodes=9)], in_flight={"h100": 2})
    assert (usage.free, usage.used, usage.in_flight) == (-1, 9, 2)


def test_an_unused_pool_is_all_free_and_other_pools_consumers_are_not_counted():
    [usage] = tally([H200], [Consumer(pool="h100", role="training", nodes=3)])
    assert (usage.consumers, usage.free) == ({}, 4)


def test_the_json_shape_is_the_same_for_plan_and_status():
    [usage] = tally([H100], [Consumer(pool="h100", role="training", nodes=1)])
    assert usage.to_dict() == {"name": "h100", "instance_type": "p5.48xlarge", "az_id": "use1-az4", "count": 8,
                               "kind": "odcr", "consumers": {"training": 1}, "spares": 0, "free": 7, "in_flight": 0,
                               "start_time": None, "end_time": None,
                               "price_usd_per_hour": None, "unused_billed_to": None}


def test_hot_spares_are_their_own_column_and_no_consumers():
    spared = PoolSpec(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", count=8, kind=PoolKind.ODCR, spares=2)
    [usage] = tally([spared], [Consumer(pool="h100", role="training", nodes=5)])
    assert (usage.consumers, usage.spares, usage.free, usage.used) == ({"training": 5}, 2, 1, 7)
    [over] = tally([spared], [Consumer(pool="h100", role="training", nodes=7)])
    assert over.free == -1
    out = PoolOutput(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", count=8, kind="odcr", spares=1)
    assert tally([out], [])[0].to_dict()["spares"] == 1

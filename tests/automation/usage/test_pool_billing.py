"""Who pays for a pool's unused slots and at what price: the pool's contract outputs, read back as
the ledger's reservations."""

from __future__ import annotations

import pytest

from gpufleet.automation.inventory import FleetInventory
from gpufleet.automation.usage.ledger import HOUR_S, compute
from gpufleet.automation.usage.sources import pool_slots
from gpufleet.automation.usage.spans import NodeSpan
from gpufleet.infra import catalog
from gpufleet.infra.contract import PoolOutput, StackOutputs
from gpufleet.infra.errors import ConfigError

T0 = 1_764_547_200.0  # 2025-12-01T00:00Z


def inventory(*pools: PoolOutput) -> FleetInventory:
    doc = {
        "platform": StackOutputs(role="platform", account_id="111111111111", region="us-east-1", pools=pools),
        "training": StackOutputs(role="training", account_id="222222222222", region="us-east-1"),
        "inference": StackOutputs(role="inference", account_id="333333333333", region="us-east-1"),
    }
    # Through the exports and back, as `gpufleet collect` writes them and `usage` reads them.
    return FleetInventory(stacks={name: StackOutputs.from_dict(out.to_dict(), stack=name, source="inventory.json")
                                  for name, out in doc.items()})


def test_idle_slots_go_to_the_billing_owner_at_the_blocks_purchase_price():
    odcr = PoolOutput(name="h100", instance_type="p5.48xlarge", az_id="use1-az4", kind="odcr", count=2,
                      unused_billed_to="inference", unused_billing_owner_id="333333333333")
    block = PoolOutput(name="h200", instance_type="p5en.48xlarge", az_id="use1-az6", kind="capacity-block",
                       count=1, price_usd_per_hour=42.5, reservation_id="cr-0123456789abcdef0")
    pools = {p.name: p for p in pool_slots(inventory(odcr, block))}
    assert (pools["h100"].owner_stack, pools["h100"].owner_account_id) == ("inference", "333333333333")
    assert pools["h100"].price_usd_per_node_hour == catalog.lookup("p5.48xlarge").price_usd_per_hour
    assert (pools["h200"].owner_stack, pools["h200"].owner_account_id) == ("platform", "111111111111")
    assert pools["h200"].price_usd_per_node_hour == 42.5

    # One training node for the first half hour of each pool: the rest of the hour is idle.
    nodes = [NodeSpan(instance_id=f"i-{p}", stack="training", account_id="222222222222", role="training",
                      pool=p, start=T0, end=T0 + 1800) for p in ("h100", "h200")]
    ledger = compute(T0, T0 + HOUR_S, list(pools.values()), nodes)
    idle = {r.pool: r for r in ledger.rows if r.klass == "idle"}
    assert (idle["h100"].account_id, idle["h100"].node_seconds) == ("333333333333", 2 * 3600 - 1800)
    assert (idle["h200"].account_id, idle["h200"].node_seconds) == ("111111111111", 1800)
    assert idle["h200"].cost_usd == 42.5 / 2
    trained = next(r for r in ledger.rows if r.pool == "h200" and r.klass == "training")
    assert (trained.account_id, trained.cost_usd) == ("222222222222", 42.5 / 2)


def test_outputs_written_before_the_prices_read_as_on_demand_and_owner_billed():
    """Contract v1 outputs carry neither key: the on-demand rate, billed to the owner."""
    v1 = {"version": 1, "role": "platform", "accountId": "111111111111", "region": "us-east-1",
          "pools": [{"name": "h100", "instanceType": "p5.48xlarge", "azId": "use1-az4", "kind": "odcr", "count": 1}]}
    platform = StackOutputs.from_dict(v1, stack="platform", source="inventory.json")
    [slots] = pool_slots(FleetInventory(stacks={"platform": platform}))
    assert (slots.owner_stack, slots.owner_account_id) == ("platform", "111111111111")
    assert slots.price_usd_per_node_hour == catalog.lookup("p5.48xlarge").price_usd_per_hour


def test_a_price_that_is_not_a_number_names_its_output():
    doc = {"role": "platform", "accountId": "111111111111", "region": "us-east-1",
           "pools": [{"name": "h200", "instanceType": "p5en.48xlarge", "azId": "use1-az6", "kind": "capacity-block",
                      "count": 1, "priceUsdPerHour": "42.5"}]}
    with pytest.raises(ConfigError) as caught:
        StackOutputs.from_dict(doc, stack="platform", source="inventory.json")
    assert (caught.value.key, caught.value.value) == ("stacks.platform.pools[0].priceUsdPerHour", "42.5")

"""The fleet inventory: what the automation needs to know about the deployed stacks.

It comes from Pulumi stack outputs (``pulumi stack output --json`` per stack, collected into one
file) or from the sandbox, in the same shape. The stack program exports, per stack, these keys
(the contract between stacks/ and automation/):

    every stack:  role, accountId, region, operatorRoleArn (consumers; null until the baseline
                  exists), externalId (optional)
    platform:     pools: [{name, instanceType, azId, count, kind, reservationId}],
                  journalTable, automationRoleArn (the role that assumes each consumer's
                  operatorRoleArn with its externalId), releaseBucket
    consumers:    nodeGroups: [{name, pool, instanceType, asgName, asgTags, minNodes, maxNodes,
                  initialNodes, orchestrator}]   (orchestrator: slurm | eks | none)

The inventory file is ``{"stacks": {"<stack name>": {<that stack's outputs>}, ...}}``. An inventory
the sandbox wrote also says ``"orchestratorStandIn": "none"``: its nodes have no orchestrator that
answers, so every node group uses that adapter while ``orchestrator`` keeps the program's value
(gpufleet.automation.sandbox.outputs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.infra.errors import ConfigError

DEFAULT_PATH = Path(".gpufleet/inventory.json")


@dataclass(frozen=True, kw_only=True)
class AccountRef:
    """One stack's account, and how the automation gets into it."""

    stack: str
    """Stack name (platform, training, inference)."""
    role: str
    account_id: str
    region: str
    operator_role_arn: str | None = None
    """Role the automation assumes in this account; None: use the caller's own credentials."""
    external_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class PoolRef:
    name: str
    instance_type: str
    az_id: str
    count: int
    kind: str
    reservation_id: str | None
    owner_stack: str = "platform"


@dataclass(frozen=True, kw_only=True)
class NodeGroupRef:
    stack: str
    """The consumer stack holding the group."""
    role: str
    name: str
    pool: str
    instance_type: str
    asg_name: str
    """Auto Scaling group behind the node group (EKS managed groups have one too)."""
    min_nodes: int
    max_nodes: int
    num_nodes: int
    """Initial desired size from the stack; the live value is in the ASG."""
    orchestrator: str = "none"


@dataclass(frozen=True, kw_only=True)
class FleetInventory:
    accounts: Mapping[str, AccountRef]
    """By stack name."""
    pools: tuple[PoolRef, ...]
    node_groups: tuple[NodeGroupRef, ...]
    journal_table: str
    journal_stack: str = "platform"
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def account_for_role(self, role: str) -> AccountRef:
        for account in self.accounts.values():
            if account.role == role:
                return account
        raise KeyError(role)

    def pool(self, name: str) -> PoolRef:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def groups_of(self, role: str, pool: str | None = None) -> list[NodeGroupRef]:
        return [g for g in self.node_groups if g.role == role and (pool is None or g.pool == pool)]


def from_stack_outputs(outputs: Mapping[str, Mapping[str, Any]], source: str = "(outputs)", *,
                       orchestrator_stand_in: str | None = None) -> FleetInventory:
    """Build the inventory from ``{stack name: outputs}``; errors name the stack and key.
    ``orchestrator_stand_in``: the adapter every node group uses instead of its own orchestrator."""

    def need(stack: str, obj: Mapping[str, Any], key: str) -> Any:
        if key not in obj:
            raise ConfigError(source, f"stacks.{stack}.{key}", None, "missing stack output")
        return obj[key]

    accounts: dict[str, AccountRef] = {}
    pools: list[PoolRef] = []
    groups: list[NodeGroupRef] = []
    journal_table = ""
    journal_stack = ""
    for stack, out in outputs.items():
        role = need(stack, out, "role")
        accounts[stack] = AccountRef(
            stack=stack, role=role, account_id=str(need(stack, out, "accountId")),
            region=need(stack, out, "region"), operator_role_arn=out.get("operatorRoleArn"),
            external_id=out.get("externalId"),
        )
        if role == "platform":
            journal_table = need(stack, out, "journalTable")
            journal_stack = stack
            for p in need(stack, out, "pools"):
                pools.append(PoolRef(name=p["name"], instance_type=p["instanceType"], az_id=p["azId"],
                                     count=int(p["count"]), kind=p.get("kind", "odcr"),
                                     reservation_id=p.get("reservationId"), owner_stack=stack))
        else:
            for g in out.get("nodeGroups", []):
                groups.append(NodeGroupRef(
                    stack=stack, role=role, name=g["name"], pool=g["pool"], instance_type=g["instanceType"],
                    asg_name=g["asgName"], min_nodes=int(g["minNodes"]), max_nodes=int(g["maxNodes"]),
                    num_nodes=int(g.get("initialNodes", g.get("numNodes", 0))),
                    orchestrator=orchestrator_stand_in or g.get("orchestrator", "none"),
                ))
    if not journal_stack:
        raise ConfigError(source, "stacks", sorted(outputs), "no platform stack in the inventory")
    return FleetInventory(accounts=accounts, pools=tuple(pools), node_groups=tuple(groups),
                          journal_table=journal_table, journal_stack=journal_stack, source=source)


def load_inventory(path: Path = DEFAULT_PATH) -> FleetInventory:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "(file)", None, "no inventory",
                          "run `gpufleet sandbox up`, or collect `pulumi stack output --json` of each stack") from None
    except json.JSONDecodeError as err:
        raise ConfigError(str(path), "(json)", None, f"not valid JSON: {err}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("stacks"), Mapping):
        raise ConfigError(str(path), "stacks", None, "expected {\"stacks\": {name: outputs}}")
    stand_in = doc.get("orchestratorStandIn")
    if stand_in is not None and stand_in not in ("slurm", "eks", "none"):
        raise ConfigError(str(path), "orchestratorStandIn", stand_in, "expected slurm, eks or none")
    return from_stack_outputs(doc["stacks"], source=str(path), orchestrator_stand_in=stand_in)

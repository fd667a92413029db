"""The fleet inventory: every stack's outputs, read through the contract, in one file.

The inventory is what ``gpufleet inventory collect`` writes (from the Pulumi state of each stack,
or from ``pulumi stack output --json``) and what ``gpufleet sandbox up`` writes for the emulated
fleet. Every stack's outputs are a ``StackOutputs`` (gpufleet.infra.contract); this module adds
only where they came from and when, and the few lookups the commands share. The file:

    {"version": 1,
     "collectedAt": "2025-06-01T08:00:00Z",
     "stacks":  {"<stack>": {<the stack's outputs, StackOutputs.to_dict()>}, ...},
     "sources": {"<stack>": {"kind": "s3" | "file" | "outputs" | "sandbox",
                             "location": "s3://bucket/.pulumi/stacks/gpufleet/training.json",
                             "updatedAt": "<the state's last update, ISO 8601>" | null}, ...}}

A malformed or partial inventory is bad input (exit 2) naming the file and the key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gpufleet.infra.contract import NodeGroupOutput, PoolOutput, StackOutputs
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.strict_yaml import read_text

DEFAULT_PATH = Path(".gpufleet/inventory.json")
NANOS = re.compile(r"(\.\d{6})\d+")
INVENTORY_VERSION = 1
SOURCE_KINDS = ("s3", "file", "outputs", "sandbox")
ORCHESTRATORS = ("slurm", "eks", "none")
STAND_IN_KEY = "orchestratorStandIn"
NODE_PROBE_KEY = "nodeProbeEndpoint"
"""Where a stack's outputs came from: a self-managed S3 backend's state, a local file backend's
state, a file of ``pulumi stack output --json``, or the sandbox."""


@dataclass(frozen=True, kw_only=True)
class StackSource:
    """Where one stack's outputs were read, and how new the state was."""

    kind: str
    """One of SOURCE_KINDS."""
    location: str
    """The state file (``s3://...`` or a path), or the outputs file."""
    updated_at: str | None = None
    """When the stack was last updated (the state's manifest time, ISO 8601); None when the source
    does not say (``pulumi stack output --json``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, "updatedAt": self.updated_at}


@dataclass(frozen=True, kw_only=True)
class StackNodeGroup:
    """A node group and the consumer stack that holds it (its account, its role)."""

    stack: str
    """The consumer stack's name."""
    role: str
    """That stack's role (training, inference)."""
    group: NodeGroupOutput
    """The node group as the stack exports it."""
    orchestrator: str
    """The adapter gpufleet drives the group's nodes through: the program's ``orchestrator``, or the
    inventory's stand-in (a sandbox, where no Slurm or Kubernetes answers for the emulated nodes)."""


@dataclass(frozen=True, kw_only=True)
class FleetInventory:
    """Every stack's outputs by stack name; exactly one is the platform stack."""

    stacks: Mapping[str, StackOutputs]
    """Stack name -> its outputs."""
    collected_at: str | None = None
    """When the outputs were collected (ISO 8601, UTC)."""
    sources: Mapping[str, StackSource] = field(default_factory=dict)
    """Stack name -> where its outputs came from."""
    source: str = ""
    """The inventory file (for messages)."""
    orchestrator_stand_in: str | None = None
    """Set by the sandbox (``orchestratorStandIn``): every node group is driven through this adapter
    while its ``orchestrator`` keeps the program's value (gpufleet.automation.sandbox.outputs)."""
    node_probe_endpoint: str | None = None
    """Set by the sandbox (``nodeProbeEndpoint``): where the health checks of nodes no orchestrator
    reaches are run (gpufleet.automation.health.probe.EndpointProbe)."""

    @cached_property
    def platform_stack(self) -> str:
        return next(name for name, out in self.stacks.items() if out.role == "platform")

    @property
    def platform(self) -> StackOutputs:
        return self.stacks[self.platform_stack]

    @property
    def journal_table(self) -> str:
        return self.platform.journal_table or ""

    @property
    def pools(self) -> tuple[PoolOutput, ...]:
        return self.platform.pools

    def pool(self, name: str) -> PoolOutput:
        pool = self.platform.pool(name)
        if pool is None:
            raise KeyError(name)
        return pool

    @cached_property
    def node_groups(self) -> tuple[StackNodeGroup, ...]:
        """Every consumer's node groups, stack by stack."""
        return tuple(StackNodeGroup(stack=name, role=out.role, group=g,
                                    orchestrator=self.orchestrator_stand_in or g.orchestrator)
                     for name, out in self.stacks.items() for g in out.node_groups)

    def groups_of(self, role: str, pool: str | None = None) -> list[StackNodeGroup]:
        return [g for g in self.node_groups if g.role == role and (pool is None or g.group.pool == pool)]

    def own_groups_of(self, role: str, pool: str) -> list[StackNodeGroup]:
        """The role's groups in the pool's own reservation: a move never grows or shrinks a group in
        lent slots (the scheduler's lending does, docs/schedule.md)."""
        return [g for g in self.groups_of(role, pool) if not g.group.lent_reservation_id]

    def to_dict(self) -> dict[str, Any]:
        doc = {"version": INVENTORY_VERSION, "collectedAt": self.collected_at,
               "stacks": {name: out.to_dict() for name, out in self.stacks.items()},
               "sources": {name: src.to_dict() for name, src in self.sources.items()}}
        if self.orchestrator_stand_in is not None:
            doc[STAND_IN_KEY] = self.orchestrator_stand_in
        if self.node_probe_endpoint is not None:
            doc[NODE_PROBE_KEY] = self.node_probe_endpoint
        return doc


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time as Pulumi and we write it (``Z`` or an offset; naive means UTC). Pulumi (Go)
    writes nanoseconds; datetime keeps microseconds."""
    parsed = dt.datetime.fromisoformat(NANOS.sub(r"\1", value.replace("Z", "+00:00")))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def from_doc(doc: object, source: str) -> FleetInventory:
    """Read an inventory document; every problem is a ConfigError naming ``source`` and the key."""
    if not isinstance(doc, Mapping):
        raise ConfigError(source, "(document)", None, "expected an inventory object")
    version = doc.get("version")
    if version != INVENTORY_VERSION:
        problem = ("written by a newer gpufleet" if isinstance(version, int) and version > INVENTORY_VERSION
                   else f"expected inventory version {INVENTORY_VERSION}")
        raise ConfigError(source, "version", version, problem, "collect it again: gpufleet inventory collect")
    stacks_doc = doc.get("stacks")
    if not isinstance(stacks_doc, Mapping) or not stacks_doc:
        raise ConfigError(source, "stacks", stacks_doc, "expected {stack name: outputs}")
    stacks = {str(name): StackOutputs.from_dict(out, stack=str(name), source=source) for name, out in stacks_doc.items()}
    sources = _sources(doc.get("sources", {}), source)
    collected_at = doc.get("collectedAt")
    if collected_at is not None:
        _time(collected_at, source, "collectedAt")
    stand_in = doc.get(STAND_IN_KEY)
    if stand_in is not None and stand_in not in ORCHESTRATORS:
        raise ConfigError(source, STAND_IN_KEY, stand_in, f"expected one of {', '.join(ORCHESTRATORS)}")
    probe_endpoint = doc.get(NODE_PROBE_KEY)
    if probe_endpoint is not None and not (isinstance(probe_endpoint, str)
                                           and probe_endpoint.startswith(("http://", "https://"))):
        raise ConfigError(source, NODE_PROBE_KEY, probe_endpoint, "expected an http(s) URL")
    inventory = FleetInventory(stacks=stacks, collected_at=collected_at, sources=sources, source=source,
                               orchestrator_stand_in=stand_in, node_probe_endpoint=probe_endpoint)
    check(inventory)
    return inventory


def _time(value: object, source: str, key: str) -> str:
    try:
        parse_time(str(value))
    except ValueError:
        raise ConfigError(source, key, value, "not an ISO 8601 time") from None
    return str(value)


def _sources(doc: object, source: str) -> dict[str, StackSource]:
    if not isinstance(doc, Mapping):
        raise ConfigError(source, "sources", doc, "expected {stack name: {kind, location, updatedAt}}")
    out = {}
    for name, entry in doc.items():
        key = f"sources.{name}"
        if not isinstance(entry, Mapping) or entry.get("kind") not in SOURCE_KINDS or not entry.get("location"):
            raise ConfigError(source, key, entry, f"expected {{kind: {' | '.join(SOURCE_KINDS)}, location, updatedAt}}")
        updated = entry.get("updatedAt")
        out[str(name)] = StackSource(kind=entry["kind"], location=str(entry["location"]),
                                     updated_at=None if updated is None else _time(updated, source, f"{key}.updatedAt"))
    return out


def check(inventory: FleetInventory) -> None:
    """What spans stacks: one platform stack with the journal; every node group on one of its pools."""
    source = inventory.source
    platforms = sorted(name for name, out in inventory.stacks.items() if out.role == "platform")
    if len(platforms) != 1:
        raise ConfigError(source, "stacks", sorted(inventory.stacks),
                          "no platform stack in the inventory" if not platforms
                          else f"more than one platform stack: {', '.join(platforms)}")
    platform = inventory.stacks[platforms[0]]
    if not platform.journal_table:
        raise ConfigError(source, f"stacks.{platforms[0]}.journalTable", None, "missing stack output",
                          "run `pulumi up` on the platform stack with this gpufleet, then collect again")
    pools = {p.name for p in platform.pools}
    for name, out in inventory.stacks.items():
        for i, group in enumerate(out.node_groups):
            if group.pool not in pools:
                raise ConfigError(source, f"stacks.{name}.nodeGroups[{i}].pool", group.pool,
                                  f"no such pool in the outputs of {platforms[0]}",
                                  f"pools: {', '.join(sorted(pools)) or 'none'}")


def load_inventory(path: Path = DEFAULT_PATH) -> FleetInventory:
    if not path.exists() and not path.is_symlink():
        raise ConfigError(str(path), "(file)", None, "no inventory",
                          "run `gpufleet inventory collect` (or `gpufleet sandbox up` for the sandbox)")
    text = read_text(path, "inventory")  # a directory, unreadable or not UTF-8: ConfigError naming it
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(str(path), "(json)", None, f"not valid JSON: {err}") from None
    return from_doc(doc, str(path))


def write_inventory(inventory: FleetInventory, path: Path) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(inventory.to_dict(), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

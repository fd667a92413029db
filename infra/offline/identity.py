"""Resource identity as the Pulumi engine computes it: URNs, and the earlier URNs aliases name.

The engine finds a resource's previous state under its URN or under one of its aliases; a resource
whose earlier URN is neither is created anew and the old one deleted (a replacement). Pure: no
pulumi import; ``render.RecordingMonitor`` feeds it what the engine would receive.

A URN is ``urn:pulumi:<stack>::<project>::<qualified type>::<name>``; the qualified type is the
parent's qualified type, ``$``, the resource's own type (the root stack's type is left out), so
moving a resource under another parent changes its URN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

ROOT_STACK = "pulumi:pulumi:Stack"


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def make_urn(stack: str, project: str, type_: str, name: str, parent: str | None) -> str:
    """The URN the engine gives a resource registered under ``parent`` (a URN, or None)."""
    if parent and qualified_type(parent) != ROOT_STACK:
        type_ = f"{qualified_type(parent)}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


@dataclass(frozen=True, kw_only=True)
class AliasSpec:
    """One entry of a registration's aliases, as the SDK sends it (``pulumi.Alias``, or a URN)."""

    urn: str = ""
    """A full earlier URN; when set, the other fields are ignored."""
    name: str = ""
    """Earlier name; "" means the current one."""
    type: str = ""
    """Earlier type token; "" means the current one."""
    stack: str = ""
    """Earlier stack; "" means the current one."""
    project: str = ""
    """Earlier project; "" means the current one."""
    parent_urn: str = ""
    """Earlier parent; "" means the current one (unless ``no_parent``)."""
    no_parent: bool = False
    """The resource had no parent (it sat directly under the stack)."""


class Registration(Protocol):
    """What identity needs of one registration (``RenderedResource`` has it)."""

    @property
    def urn(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def aliases(self) -> tuple[AliasSpec, ...]: ...


def _collapse(alias: AliasSpec, reg: Registration, stack: str, project: str, matched: Mapping[str, str]) -> str:
    if alias.urn:
        return alias.urn
    parent = reg.parent
    if alias.parent_urn:
        # A parent found under an earlier URN was this resource's earlier parent as well.
        parent = matched.get(alias.parent_urn, alias.parent_urn)
    return make_urn(alias.stack or stack, alias.project or project, alias.type or reg.type,
                    alias.name or reg.name, None if alias.no_parent else parent)


def _inherited(type_: str, name: str, parent_name: str, earlier_parent: str, stack: str, project: str) -> str:
    """A child keeps its place under a parent found under an earlier URN; a child named
    ``<parent name>-x`` follows the parent's earlier name."""
    if name.startswith(parent_name):
        name = earlier_parent.split("::", 3)[3] + name[len(parent_name):]
    return make_urn(stack, project, type_, name, earlier_parent)


@dataclass(frozen=True, kw_only=True)
class Matching:
    """Where the engine would find each resource's state, given the URNs it holds state for."""

    found: Mapping[str, str]
    """Earlier URN by current URN, for every resource with state (the two differ when an alias matched)."""
    lost: tuple[str, ...]
    """Earlier URNs no resource claims: the engine deletes them (and creates any successor anew)."""
    conflicts: tuple[str, ...]
    """Earlier URNs claimed twice, which the engine refuses (one line each, naming both claimants)."""


def match_previous(registrations: Sequence[Registration], previous: Iterable[str], *, stack: str,
                   project: str) -> Matching:
    """Replay the engine's lookup (``generateAliases`` and the old-state search of the step
    generator): a resource's URN first, then its aliases, then those inherited from the earlier URN
    its parent was found under. Parents are looked up before their children, as they register."""
    olds = set(previous)
    by_urn = {r.urn: r for r in registrations}

    def depth(reg: Registration) -> int:
        n, parent = 0, by_urn.get(reg.parent or "")
        while parent is not None:
            n, parent = n + 1, by_urn.get(parent.parent or "")
        return n

    matched: dict[str, str] = {}  # current URN -> the earlier URN it was found under, when an alias
    found: dict[str, str] = {}
    claimed: dict[str, str] = {}
    conflicts: list[str] = []
    for reg in sorted(registrations, key=lambda r: (depth(r), r.urn)):
        candidates = [_collapse(a, reg, stack, project, matched) for a in reg.aliases]
        parent = by_urn.get(reg.parent or "")
        if parent is not None and parent.urn in matched:
            earlier_parent = matched[parent.urn]
            candidates.append(_inherited(reg.type, reg.name, parent.name, earlier_parent, stack, project))
            for alias in candidates[:len(reg.aliases)]:
                candidates.append(_inherited(qualified_type(alias).split("$")[-1], alias.split("::", 3)[3],
                                             parent.name, earlier_parent, stack, project))
        for urn in [reg.urn, *candidates]:
            if urn not in olds:
                continue
            if urn != reg.urn:
                if urn in by_urn:
                    conflicts.append(f"{reg.urn} claims {urn}, which is still registered under that URN")
                matched[reg.urn] = urn
            if urn in claimed:
                conflicts.append(f"{reg.urn} and {claimed[urn]} both claim {urn}")
            claimed[urn] = reg.urn
            found[reg.urn] = urn
            break
    return Matching(found=found, lost=tuple(sorted(olds - set(claimed))), conflicts=tuple(conflicts))

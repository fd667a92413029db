"""`gpufleet inventory collect`: every stack's outputs from its Pulumi state, into the inventory.

Per stack, one source: the state in a self-managed backend (``--backend s3://<bucket>`` or
``file://<dir>``, else PULUMI_BACKEND_URL), or ``--from-file STACK=FILE`` holding ``pulumi stack
output --json`` (or ``pulumi stack export``). Each stack's outputs are validated through the
contract (StackOutputs.from_dict) and the fleet as a whole (one platform stack, every node
group on one of its pools) before the inventory is written, atomically: a malformed or partial
state is bad input naming the stack and key, and leaves the previous inventory as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.inventory import (
    DEFAULT_PATH,
    FleetInventory,
    StackSource,
    check,
    now_iso,
    write_inventory,
)
from gpufleet.automation.pulumi_state import (
    Backend,
    StackState,
    parse_backend,
    read_backend_state,
    read_outputs_file,
    reveal,
)
from gpufleet.infra.contract import StackOutputs
from gpufleet.infra.errors import BadInputError
from gpufleet.infra.stackfile import discover_stacks, stack_name

BACKEND_ENV = "PULUMI_BACKEND_URL"
DEFAULT_PROJECT = "gpufleet"
"""Pulumi.yaml's ``name``: the project part of a state file's path."""


@dataclass(frozen=True, kw_only=True)
class CollectArgs:
    stacks: tuple[str, ...] = ()
    """Stacks to read from the backend; empty: every stack file in ``stacks_dir`` not given by --from-file."""
    from_files: tuple[str, ...] = ()
    """``STACK=FILE`` pairs: that stack's outputs from a file instead of the backend."""
    backend: str | None = None
    """The backend URL; None: PULUMI_BACKEND_URL."""
    project: str = DEFAULT_PROJECT
    stacks_dir: Path = Path("stacks")
    inventory: Path = DEFAULT_PATH
    """Where the inventory is written."""
    profile: str | None = None
    """AWS profile for an S3 backend (else its ``profile`` query parameter, else the default chain)."""


@dataclass(frozen=True, kw_only=True)
class CollectedStack:
    """One stack of the new inventory."""

    stack: str
    role: str
    kind: str
    """Where its outputs came from (s3, file, outputs)."""
    location: str
    updated_at: str | None
    """Its last update (the state's manifest time); None from ``pulumi stack output --json``."""
    pools: int
    node_groups: int


@dataclass(frozen=True, kw_only=True)
class CollectResult:
    inventory: str
    """The file written."""
    collected_at: str
    stacks: list[CollectedStack] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


S3ClientFactory = Callable[[Backend], Any]
"""backend -> a boto3 S3 client that reads it."""


def default_s3(profile: str | None) -> S3ClientFactory:
    def make(backend: Backend) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound

        from gpufleet.automation.aws import translate

        try:
            session = boto3.Session(profile_name=profile or backend.profile)
        except ProfileNotFound as err:
            raise translate(err) from None
        return session.client("s3", region_name=backend.region, config=Config(
            retries={"mode": "adaptive", "total_max_attempts": 8}, user_agent_extra="gpufleet"))

    return make


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """Which source each stack is read from, decided before any read."""

    backend: Backend | None
    files: Mapping[str, Path]
    from_backend: tuple[str, ...]


def plan_sources(args: CollectArgs, environ: Mapping[str, str] = os.environ) -> _Plan:
    """Check every flag; BadInputError names the flag and the value."""
    files: dict[str, Path] = {}
    for pair in args.from_files:
        stack, sep, path = pair.partition("=")
        if not sep or not stack or not path:
            raise BadInputError(f"--from-file {pair!r}: expected STACK=FILE", "e.g. --from-file training=training.json")
        if stack in files:
            raise BadInputError(f"--from-file {pair!r}: stack {stack!r} given twice")
        files[stack] = Path(path)
    wanted = list(dict.fromkeys(args.stacks))
    if not wanted:
        paths = discover_stacks(args.stacks_dir)
        wanted = [stack_name(p) for p in paths]
        if not wanted and not files:
            raise BadInputError(f"no stacks to collect: no Pulumi.<stack>.yaml in {args.stacks_dir}",
                                "name them with --stack, or pass --stacks-dir")
    from_backend = tuple(s for s in wanted if s not in files)
    url = args.backend or environ.get(BACKEND_ENV)
    backend = parse_backend(url, "--backend" if args.backend else BACKEND_ENV) if url else None
    if from_backend and backend is None:
        raise BadInputError(f"no backend to read {', '.join(from_backend)} from",
                            f"pass --backend s3://<bucket> or file://<dir>, set {BACKEND_ENV}, "
                            "or give each stack with --from-file STACK=FILE")
    return _Plan(backend=backend, files=files, from_backend=from_backend)


def collect(args: CollectArgs, *, s3: S3ClientFactory | None = None,
            on_stack: Callable[[str], None] | None = None) -> CollectResult:
    """Read every stack, validate them through the contract, write the inventory atomically."""
    plan = plan_sources(args)
    say = on_stack or (lambda _s: None)
    states: dict[str, tuple[str, StackState]] = {}
    backend = plan.backend
    if backend is not None and plan.from_backend:
        s3_client = (s3 or default_s3(args.profile))(backend) if backend.kind == "s3" else None
        for stack in plan.from_backend:
            say(stack)
            states[stack] = (backend.kind, read_backend_state(backend, args.project, stack, s3=s3_client))
    for stack, path in plan.files.items():
        say(stack)
        states[stack] = ("outputs", read_outputs_file(path, stack))
    outputs = {stack: StackOutputs.from_dict(reveal(state.outputs, stack, state.location), stack=stack,
                                             source=state.location) for stack, (_, state) in states.items()}
    sources = {stack: StackSource(kind=kind, location=state.location, updated_at=state.updated_at)
               for stack, (kind, state) in states.items()}
    collected_at = now_iso()
    inventory = FleetInventory(stacks=outputs, collected_at=collected_at, sources=sources, source=str(args.inventory))
    check(inventory)
    write_inventory(inventory, args.inventory)
    return CollectResult(
        inventory=str(args.inventory), collected_at=collected_at,
        stacks=[CollectedStack(stack=stack, role=out.role, kind=sources[stack].kind, location=sources[stack].location,
                               updated_at=sources[stack].updated_at, pools=len(out.pools),
                               node_groups=len(out.node_groups)) for stack, out in outputs.items()],
        notes=_notes(outputs, sources, plan.files))


def _notes(outputs: Mapping[str, StackOutputs], sources: Mapping[str, StackSource],
           files: Mapping[str, Path]) -> list[str]:
    notes = [f"{stack}: from an outputs file; its last update is unknown, so `gpufleet status` cannot tell "
             "when the stack changes after this collection" for stack in files if sources[stack].updated_at is None]
    consumers = [s for s, out in outputs.items() if out.role != "platform"]
    if not consumers:
        notes.append("no consumer stack collected: the inventory has pools but no node groups")
    return notes


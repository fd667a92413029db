"""Render stacks offline: run the real stacks/__main__.py under Pulumi's mock runtime.

The program reads its config through ``pulumi.Config`` exactly as under the CLI; here the config is
fed from the validated StackSpec. The platform renders first so that its exports answer the
consumers' StackReference. Several stacks render in one process: the runtime state (settings,
root stack, config, event loop) is reset between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import multiprocessing
import os
import runpy
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import Role, StackSpec
from gpufleet.infra.node_image_plan import ImageKind, parameter_name
from gpufleet.infra.offline.identity import AliasSpec, make_urn
from gpufleet.infra.offline.mocks import FleetMocks
from gpufleet.infra.rendered import RenderedResource, RenderedStack
from gpufleet.infra.stack_config import config_of

PROJECT = "gpufleet"
PROGRAM = Path(__file__).resolve().parents[2] / "stacks" / "__main__.py"


def engine_config(raw: Mapping[str, Any]) -> dict[str, str]:
    """What the CLI hands the program: strings, with arrays, objects and booleans as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}


def assumed_platform_exports(spec: StackSpec) -> dict[str, Any]:
    """Stand-in platform outputs for a consumer rendered without its platform stack: one odcr pool
    per pool the stack names, in the stack's first AZ ID, and a placeholder node image per kind.
    The plan says the binding was not checked."""
    pools = {}
    for group in spec.node_groups:
        pools.setdefault(group.pool, {
            "name": group.pool, "instanceType": group.instance_type, "azId": spec.az_ids[0],
            "count": sum(g.max_nodes for g in spec.node_groups if g.pool == group.pool),
            "kind": "odcr", "reservationId": "cr-00000000000000000",
            "shareArn": f"arn:aws:ram:{spec.region}:000000000000:resource-share/assumed-{group.pool}"})
    # No platform account is known here: the stand-in automation role is in no fleet account, so the
    # guardrails report the operator role's trust as unverified rather than passing it.
    return {"role": "platform", "accountId": "000000000000", "region": spec.region, "pools": list(pools.values()),
            "ramSharing": spec.ram_sharing.value,
            "monitoring": {"workspaceId": "ws-assumed",
                           "remoteWriteRoleArn": "arn:aws:iam::000000000000:role/gpufleet-metrics-remote-write",
                           "remoteWriteUrl": "https://aps-workspaces.invalid/workspaces/assumed/api/v1/remote_write"},
            "automationRoleArn": "arn:aws:iam::000000000000:role/gpufleet-automation",
            "nodeImages": [{"kind": kind.value, "amiId": "ami-00000000000000000", "version": "assumed",
                            "parameterName": parameter_name(kind)} for kind in ImageKind]}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping what the engine would see: parent, provider, inputs,
    aliases; and naming resources as the engine does (the SDK's mock drops all but the parent's
    own type from a nested resource's URN and keeps the root stack's type in top-level ones)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return make_urn(pulumi_settings.get_stack(), pulumi_settings.get_project(), type_, name, parent or None)

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        registered = self.resources.get(response.urn)
        with self._lock:
            self.registrations.append({
                "type": request.type, "name": request.name, "urn": response.urn,
                "custom": bool(request.custom), "parent": request.parent or None,
                "provider": request.provider.rsplit("::", 1)[0] if request.provider else None,
                "inputs": pulumi_mocks.rpc.deserialize_properties(request.object),
                "outputs": dict(registered.state) if registered is not None else {},
                "id": registered.id if registered is not None else None,
                "ignore_changes": tuple(request.ignoreChanges),
                "dependencies": tuple(request.dependencies),
                "aliases": aliases_of(request),
            })
        return response


def aliases_of(request: Any) -> tuple[AliasSpec, ...]:
    """A RegisterResource request's aliases: full specs where the monitor supports them (the mock
    does), else the URNs the SDK computed itself."""
    found = []
    for alias in request.aliases:
        if alias.WhichOneof("alias") == "urn":
            found.append(AliasSpec(urn=alias.urn))
        else:
            spec = alias.spec
            found.append(AliasSpec(name=spec.name, type=spec.type, stack=spec.stack, project=spec.project,
                                   parent_urn=spec.parentUrn, no_parent=spec.noParent))
    found += [AliasSpec(urn=urn) for urn in request.aliasURNs]
    return tuple(found)


def close_runtime(loop: asyncio.AbstractEventLoop, *, failed: bool = False) -> None:
    """Leave no state behind for the next render: the root stack, and outputs still pending after a
    failed program (the SDK tracks them in a process-wide set that outlives the event loop).

    After a failed program, its outputs' futures hold the error, unretrieved, in reference cycles
    that only the cyclic collector frees, whenever it next runs. Their finalizers then run wherever
    that is; in CPython 3.11 a collection inside the AST constructor (``ast.parse``, pytest's
    assertion rewriting) fails it with "AST constructor recursion depth mismatch". So they are
    reaped here, quietly: the error itself is what the render raises.
    """
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    with pulumi_settings.SETTINGS.lock:
        pending = [t for t in pulumi_settings.SETTINGS.outputs if not t.done()]
        pulumi_settings.SETTINGS.outputs.clear()
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_default_executor())
    asyncio.set_event_loop(None)
    if failed:
        loop.set_exception_handler(lambda _loop, _context: None)
    loop.close()
    if failed:
        gc.collect()


def _plain(value: Any) -> Any:
    """Protobuf containers and resource references as plain JSON-able values; an asset archive as
    ``{"archive": {path: "sha256:<hex>"}}`` (the engine too compares assets by their digest)."""
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {path: _plain(asset) for path, asset in sorted(value.assets.items())}}
    if isinstance(value, pulumi.StringAsset):
        return "sha256:" + hashlib.sha256(value.text.encode()).hexdigest()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's numbers are JSON numbers; counts and ports read as ints
    return value


def run_program(program: Path, config: Mapping[str, str], mocks: pulumi.runtime.Mocks, *, stack: str,
                project: str = PROJECT) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run a Pulumi program file under mocks, as ``pulumi up`` would with this config (keys as in a
    stack file, values as the CLI passes them): every registration, and the stack's exports."""
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    error: ConfigError | None = None
    roots: list[Any] = []
    try:
        pulumi.runtime.set_all_config(dict(config), [])
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
        # set_mocks installs a root stack of its own; run_in_stack makes the one the program runs in.
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        try:
            loop.run_until_complete(pulumi_stack.run_in_stack(_runner(program, roots)))
            exports = loop.run_until_complete(_resolve(roots[0].outputs if roots else {}))
        except ConfigError as err:
            # Raised once the failed program is reaped (close_runtime), by an error whose
            # traceback does not keep its outputs alive.
            error = ConfigError(err.source, err.key, err.value, err.problem, err.hint)
            roots.clear()
    finally:
        pulumi.runtime.set_all_config({}, [])
        close_runtime(loop, failed=error is not None)
    if error is not None:
        raise error
    return sorted(monitor.registrations, key=lambda r: r["urn"]), _plain(exports)


def render_stack(spec: StackSpec, *, stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
                 program: Path = PROGRAM) -> RenderedStack:
    """Run the program for one stack under mocks and collect every registration and the exports."""
    mocks = FleetMocks(account_id=spec.account_id, region=spec.region, stack_outputs=stack_outputs)
    try:
        registrations, exports = run_program(program, engine_config(config_of(spec)), mocks, stack=spec.name)
    except ConfigError as err:
        # The program names the file as the CLI would (stacks/Pulumi.<stack>.yaml); name the
        # file this spec was actually read from.
        raise ConfigError(spec.source, err.key, err.value, err.problem, err.hint) from None
    resources = tuple(
        RenderedResource(stack=spec.name, role=spec.role.value, account_id=spec.account_id, region=spec.region,
                         type=r["type"], name=r["name"], urn=r["urn"], inputs=_plain(r["inputs"]),
                         outputs=_plain({**r["outputs"], **({"id": r["id"]} if r["id"] else {})}),
                         provider=r["provider"], parent=r["parent"], ignore_changes=r["ignore_changes"],
                         aliases=r["aliases"])
        for r in registrations)
    return RenderedStack(spec=spec, resources=resources, exports=exports)


def _runner(program: Path, roots: list[Any]) -> Callable[[], None]:
    def run() -> None:
        # The root stack lives in the context of run_in_stack's task; keep it for the exports.
        roots.append(pulumi_settings.get_root_resource())
        runpy.run_path(str(program), run_name="__main__")
    return run


async def _resolve(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return await pulumi.Output.from_input(dict(outputs)).future() or {}


def render_fleet(specs: Sequence[StackSpec], *, program: Path = PROGRAM,
                 on_stack: Callable[[StackSpec], None] | None = None,
                 parallel: bool = True) -> list[RenderedStack]:
    """Render every stack, the platform first; consumers see its exports through StackReference.

    A consumer whose platform is not among ``specs`` sees ``assumed_platform_exports``. Consumers
    do not depend on each other, so with ``parallel`` (and where the OS can fork) they render in
    forked processes that inherit the SDK modules the first render imported.
    """
    with paused_gc():
        return _render_fleet(specs, program=program, on_stack=on_stack, parallel=parallel)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Importing pulumi_aws and registering resources allocate millions of objects, which keeps
    triggering the cyclic collector for little garbage: pausing it cut a plan's time by about a
    quarter for a few MB more memory. Reference counting still frees almost everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _render_fleet(specs: Sequence[StackSpec], *, program: Path, on_stack: Callable[[StackSpec], None] | None,
                  parallel: bool) -> list[RenderedStack]:
    platforms = [s for s in specs if s.role is Role.PLATFORM]
    consumers = sorted((s for s in specs if s.role is not Role.PLATFORM), key=lambda s: s.name)
    platform_exports: dict[str, Any] | None = None
    rendered: dict[str, RenderedStack] = {}
    for spec in platforms:
        if on_stack is not None:
            on_stack(spec)
        result = render_stack(spec, program=program)
        platform_exports = dict(result.exports)
        rendered[spec.name] = result
    jobs = [(spec, {spec.platform_stack: platform_exports or assumed_platform_exports(spec)}, program)
            for spec in consumers]
    workers = min(len(jobs), os.cpu_count() or 1)
    if parallel and workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        if on_stack is not None:
            for spec, _, _ in jobs:
                on_stack(spec)
        if not rendered:  # import the SDK once here, so that every fork inherits it
            first = jobs.pop(0)
            rendered[first[0].name] = render_stack(first[0], stack_outputs=first[1], program=first[2])
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for result in map(_unwrap, pool.map(_render_job, jobs)):
                rendered[result.spec.name] = result
    else:
        for spec, outputs, path in jobs:
            if on_stack is not None:
                on_stack(spec)
            rendered[spec.name] = render_stack(spec, stack_outputs=outputs, program=path)
    return [rendered[s.name] for s in specs]


def _render_job(job: tuple[StackSpec, dict[str, Any], Path]) -> tuple[str, Any]:
    """Runs in a forked worker. Errors come back as data: ConfigError does not survive pickling."""
    spec, outputs, program = job
    try:
        return "ok", render_stack(spec, stack_outputs=outputs, program=program)
    except ConfigError as err:
        return "config", (err.source, err.key, err.value, err.problem, err.hint)
    except Exception:  # noqa: BLE001 (re-raised in the parent with the worker's traceback)
        return "error", f"rendering {spec.name} ({spec.source}) failed:\n{traceback.format_exc()}"


def _unwrap(outcome: tuple[str, Any]) -> RenderedStack:
    kind, payload = outcome
    if kind == "config":
        raise ConfigError(*payload)
    if kind == "error":
        raise RuntimeError(payload)
    return payload

"""Shared Pulumi mocks for the infra tests: the product's own mocks (infra/offline/mocks.py), one
fresh runtime per test, and the reference fleet rendered once per session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

from gpufleet.infra import stackfile
from gpufleet.infra.model import StackSpec
from gpufleet.infra.offline.mocks import FleetMocks
from gpufleet.infra.offline.render import RecordingMonitor, close_runtime, render_fleet
from gpufleet.infra.rendered import RenderedStack

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "222222222222"
REGION = "us-east-1"


@dataclass
class MockRuntime:
    """A Pulumi mock runtime for one test: build components, then ``settle`` an Output."""

    loop: asyncio.AbstractEventLoop
    monitor: RecordingMonitor

    def settle(self, output: pulumi.Output[Any]) -> Any:
        """Resolve ``output`` (running every apply, so assertions inside them fire) and all RPCs."""
        value = self.loop.run_until_complete(output.future())
        self.loop.run_until_complete(pulumi_stack.wait_for_rpcs())
        return value

    def registered(self, type_token: str) -> list[dict[str, Any]]:
        self.loop.run_until_complete(pulumi_stack.wait_for_rpcs())
        return [r for r in self.monitor.registrations if r["type"] == type_token]


@pytest.fixture
def mock_runtime() -> Iterator[MockRuntime]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    monitor = RecordingMonitor(FleetMocks(account_id=ACCOUNT, region=REGION))
    pulumi.runtime.set_all_config({}, [])
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(monitor.mocks, project="gpufleet", stack="test", preview=False, monitor=monitor)
    try:
        yield MockRuntime(loop=loop, monitor=monitor)
    finally:
        close_runtime(loop)


@pytest.fixture(scope="session")
def reference_specs() -> list[StackSpec]:
    return [stackfile.load_stack(p) for p in stackfile.discover_stacks(REPO / "stacks")]


@pytest.fixture(scope="session")
def rendered_fleet(reference_specs) -> dict[str, RenderedStack]:
    return {r.spec.name: r for r in render_fleet(reference_specs)}


@pytest.fixture(scope="session")
def training_on_eks(tmp_path_factory):
    """The reference fleet with training switched to clusterKind eks, from a copy of its stack file."""
    stacks = tmp_path_factory.mktemp("stacks")
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if path.name == "Pulumi.training.yaml":
            doc["config"]["gpufleet:clusterKind"] = "eks"
            doc["config"]["gpufleet:eksPublicAccessCidrs"] = ["203.0.113.0/24"]
        (stacks / path.name).write_text(yaml.safe_dump(doc))
    specs = [stackfile.load_stack(stacks / f"Pulumi.{n}.yaml") for n in ("platform", "training")]
    return {r.spec.name: r for r in render_fleet(specs)}

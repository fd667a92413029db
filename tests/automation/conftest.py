"""The `sandbox` fixture: the emulated AWS (moto server + gpufleet extension) built from the
Pulumi program rendered over stacks/.

One server process per test session (started like `gpufleet sandbox up` starts it: a detached
subprocess on a free 127.0.0.1 port, stopped by its PID at the end); the program is rendered once
and applied once (`up` then snapshots every account). Each test gets:

- AWS_ENDPOINT_URL and the deployer's credentials in its environment (monkeypatch), so product
  code reaches the sandbox only through the standard variables. IAM is enforced: product code
  still enters every account through the automation role and the operator roles, evaluated
  against the rendered policies; the deployer key only lets a test's own boto3 calls set up and
  inspect anything. ``sandbox.operator_env`` holds the operator's own credentials (what
  `gpufleet sandbox env` hands out: allowed nothing but assuming the automation role);
- the fleet as applied: when the previous test changed anything (the server counts mutating
  calls), every account goes back to the snapshot (tens of ms) and the inventory file is rewritten;
- an empty request log and no faults.

    def test_x(sandbox):
        sandbox.inject_fault("autoscaling", "SetDesiredCapacity", "Throttling", count=2)
        inv = load_inventory(sandbox.inventory)
        ...
        assert not [r for r in sandbox.requests() if r["service"] == "ec2"]
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpufleet.automation.sandbox import control
from gpufleet.infra.rendered import RenderedStack
from tests.conftest import REPO, require


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever uses the sandbox needs the moto engine: mark it, so `-m "not emulator"` skips it."""
    for item in items:
        if {"sandbox", "sandbox_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulator)


@dataclass
class Sandbox:
    """A running sandbox holding the applied program, for one test."""

    endpoint: str
    port: int
    pid: int
    inventory: Path
    """Fleet inventory: the program's exports with the emulator's ids (gpufleet.infra.contract)."""
    stacks_dir: Path
    """The stack files it was rendered from (a copy of the repository's stacks/)."""
    state_dir: Path
    """Holds sandbox.json, so `gpufleet sandbox status|down --state-dir` see this server."""
    env: dict[str, str]
    client: control.SandboxClient
    rendered: list[RenderedStack]
    """The render that was applied (the one `gpufleet plan` makes of stacks_dir)."""
    ids: dict[str, str]
    """Rendered (mock) id or ARN -> the emulator's (ids.json)."""
    inventory_text: str
    """The inventory as written by the apply; restored with the accounts."""
    operator_env: dict[str, str]
    """``env`` with the operator's own credentials instead of the deployer's."""

    def inject_fault(self, service: str, action: str, error: str, count: int = 1, **kwargs: Any) -> dict[str, Any]:
        """Server-side fault: e.g. ("autoscaling", "SetDesiredCapacity", "Throttling", 2),
        ("ec2", "RunInstances", "InsufficientInstanceCapacity"), ("dynamodb", "PutItem", "InternalError");
        kwargs: account, status, message."""
        return self.client.inject_fault(service, action, error, count, **kwargs)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log: seq, time, service, action, account, region, status, error, ms."""
        return self.client.requests(since)

    def reset_log(self) -> None:
        self.client.reset_log()

    def reservations(self) -> list[dict[str, Any]]:
        """Every reservation with total/used/available and the accounts it is shared with."""
        return self.client.reservations()

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.inventory.read_text())

    def restore(self) -> None:
        """Every account back to the fleet as applied (the server's snapshot), the inventory file
        rewritten, the log and faults cleared."""
        self.client.restore()
        self.inventory.write_text(self.inventory_text)


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require(importlib.util.find_spec("moto") is not None, "moto[server] is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("sandbox")
    stacks = root / "stacks"
    shutil.copytree(REPO / "stacks", stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    state_dir = root / ".gpufleet"
    rendered = control.render(control.load_fleet(stacks))
    info = control.up(stacks, state_dir, rendered=rendered)
    assert info.pid is not None and info.endpoint is not None and info.inventory and info.ids
    inventory = Path(info.inventory)
    deployer = {"AWS_ACCESS_KEY_ID": control.SANDBOX_CREDENTIALS[0], "AWS_SECRET_ACCESS_KEY": control.SANDBOX_CREDENTIALS[1]}
    handle = Sandbox(endpoint=info.endpoint, port=int(info.endpoint.rsplit(":", 1)[1]), pid=info.pid,
                     inventory=inventory, stacks_dir=stacks, state_dir=state_dir, env={**info.env, **deployer},
                     operator_env=dict(info.env),
                     client=control.SandboxClient(info.endpoint), rendered=rendered,
                     ids=json.loads(Path(info.ids).read_text())["ids"], inventory_text=inventory.read_text())
    handle.client.reset()
    try:
        yield handle
    finally:
        control.stop_server(info.pid)


@pytest.fixture
def sandbox(sandbox_server: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The session's sandbox with the fleet as applied, an empty log, no faults, and the env pointing at it."""
    if sandbox_server.client.health()["mutations"] > 0 or sandbox_server.inventory.read_text() != sandbox_server.inventory_text:
        sandbox_server.restore()
    else:
        sandbox_server.client.reset()
    for name in [n for n in list(os.environ) if n.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in sandbox_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return sandbox_server

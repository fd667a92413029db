"""Start, stop and report the sandbox server; talk to its control endpoints.

``up`` renders the Pulumi program over the stack files (the render ``gpufleet plan`` makes) while
the server starts, applies the render into it (automation/sandbox/apply.py) and writes the
program's exports, with the emulator's ids, as the fleet inventory (automation/sandbox/outputs.py).

The server is a detached child (its own session, so it outlives `gpufleet sandbox up`); its PID,
address and state live in ``<state dir>/sandbox.json`` and its output in ``sandbox.log``. ``down``
stops exactly that PID, after checking it is still our server (the PID could have been reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpufleet.infra.errors import ConfigError, ConflictError, GpufleetError, OperationFailed
from gpufleet.infra.model import Role, StackSpec
from gpufleet.infra.stackfile import check_fleet, discover_stacks, load_stack
from gpufleet.infra.strict_yaml import read_text

if TYPE_CHECKING:
    from gpufleet.automation.sandbox.apply import AppliedFleet
    from gpufleet.infra.rendered import RenderedStack

DEFAULT_STATE_DIR = Path(".gpufleet")
DEFAULT_STACKS_DIR = Path("stacks")
SANDBOX_CREDENTIALS = ("testing", "testing")
"""Access key and secret of the sandbox's deployer (what `pulumi up` runs as); the emulator puts them
in the platform account and lets them do anything (automation/sandbox/iam_enforce.py)."""
OPERATOR_USER = "gpufleet-sandbox-operator"
"""The capacity operator's own principal in the platform account: allowed only to assume the
platform's automation role (as an operator's SSO permission set would be)."""
SERVER_MODULE = "gpufleet.automation.sandbox.server"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(kw_only=True)
class SandboxInfo:
    """What `gpufleet sandbox up|status|down` report."""

    state: str
    """running | stopped (cleanly, or never started) | stale (the recorded PID is gone)."""
    pid: int | None = None
    endpoint: str | None = None
    """Base URL of the emulated AWS (every service on one port)."""
    state_dir: str = ""
    inventory: str | None = None
    """Fleet inventory: the rendered program's exports with the emulator's ids."""
    ids: str | None = None
    """``ids.json``: every rendered (mock) id or ARN -> the one the emulator gave it."""
    stacks_dir: str | None = None
    started_at: float | None = None
    """Epoch seconds."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``render_s`` (the program under mocks), ``server_s`` (until the server answered;
    both ran at once), ``apply_s`` (the render applied into the three accounts)."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment that points boto3 (and the gpufleet CLI) at the sandbox."""
    reservations: list[dict[str, Any]] = field(default_factory=list)
    """Live accounting of each capacity reservation (running sandboxes only)."""
    already_running: bool = False


def _state_file(state_dir: Path) -> Path:
    return state_dir / "sandbox.json"


def env_for(endpoint: str, region: str, credentials: tuple[str, str] = SANDBOX_CREDENTIALS) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credentials[0],
            "AWS_SECRET_ACCESS_KEY": credentials[1], "AWS_DEFAULT_REGION": region}


def create_operator(endpoint: str, region: str, automation_role_arn: str) -> tuple[str, str]:
    """The operator's IAM user in the platform account, allowed sts:AssumeRole of the automation
    role and nothing else; returns its access key and secret."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=region, aws_access_key_id=SANDBOX_CREDENTIALS[0],
                       aws_secret_access_key=SANDBOX_CREDENTIALS[1])
    iam.create_user(UserName=OPERATOR_USER)
    iam.put_user_policy(UserName=OPERATOR_USER, PolicyName="assume-gpufleet-automation", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Sid": "AssumeAutomation", "Effect": "Allow",
                                                "Action": "sts:AssumeRole", "Resource": automation_role_arn}]}))
    key = iam.create_access_key(UserName=OPERATOR_USER)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def export_lines(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={v}" for k, v in env.items())


class SandboxClient:
    """The server's control endpoints (/_gpufleet/...)."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, name: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}/_gpufleet/{name}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise GpufleetError(f"sandbox control {method} {name}: {err.code} {err.read().decode()}") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", f"requests?since={since}")["requests"]

    def reset_log(self) -> None:
        self._call("DELETE", "requests")

    def inject_fault(self, service: str, action: str, error: str, count: int = 1, *,
                     account: str | None = None, status: int | None = None, message: str | None = None) -> dict[str, Any]:
        spec = {"service": service, "action": action, "error": error, "count": count, "account": account,
                "status": status, "message": message}
        return self._call("POST", "faults", {k: v for k, v in spec.items() if v is not None})["fault"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def reset(self, state: bool = False) -> None:
        """Clear the log and faults; ``state``: also wipe every account (then apply again)."""
        self._call("POST", "reset", {"state": state})

    def snapshot(self) -> None:
        """Remember every account as it is now (the server keeps one snapshot)."""
        self._call("POST", "snapshot", {})

    def restore(self) -> None:
        """Every account back to the snapshot; the log and faults cleared."""
        self._call("POST", "restore", {})

    def reservations(self) -> list[dict[str, Any]]:
        return self._call("GET", "reservations")["reservations"]

    def interruptions(self) -> list[dict[str, Any]]:
        """Interruption warnings sent to instances of reclaimed interruptible reservations."""
        return self._call("GET", "interruptions")["interruptions"]

    def set_interruption_warning(self, seconds: float) -> None:
        """How long a warned instance runs before a reclaim terminates it (EC2: 120 s)."""
        self._call("POST", "interruptions", {"warningSeconds": seconds})

    def enforce_iam(self, enforce: bool = True) -> None:
        """Authorize every AWS request against its caller's IAM policies (or stop)."""
        self._call("POST", "iam", {"enforce": enforce})

    def set_instance_status(self, instance_id: str, check: str, status: str) -> dict[str, Any]:
        """Fail (``impaired``) or restore (``ok``) the ``system`` or ``instance`` status check of an instance."""
        return self._call("POST", "instance-status", {"instanceId": instance_id, "check": check, "status": status})

    def iam(self) -> dict[str, Any]:
        """``{"enforce": bool, "denials": [{"service", "action", "account", "code", "message"}]}``."""
        return self._call("GET", "iam")


def load_fleet(stacks_dir: Path) -> list[StackSpec]:
    """The stack files to render; bad files fail here, before any process starts."""
    paths = discover_stacks(stacks_dir)
    if not paths:
        raise ConfigError(str(stacks_dir), "(dir)", None, "no Pulumi.<stack>.yaml files here",
                          "pass --stacks-dir pointing at the repository's stacks/")
    specs = [load_stack(p) for p in paths]
    if sum(s.role is Role.PLATFORM for s in specs) != 1:
        raise ConfigError(str(stacks_dir), "gpufleet:role", [s.role.value for s in specs],
                          "the sandbox needs exactly one platform stack")
    check_fleet(specs)
    return specs


def spawn_server(state_dir: Path, account: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a detached server on a free loopback port; ``wait_ready`` says where it listens."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / "sandbox.ready"
    ready.unlink(missing_ok=True)
    log = (state_dir / "sandbox.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", SERVER_MODULE, "--host", "127.0.0.1", "--port", "0", "--account", account,
         "--ready-file", str(ready)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    log.close()
    return process, ready


def wait_ready(process: subprocess.Popen[bytes], ready: Path, timeout: float = START_TIMEOUT_S) -> tuple[str, float]:
    """(endpoint, epoch seconds it became ready) once the server wrote its ready file; stops the
    server and raises if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            ready_at = ready.stat().st_mtime
            ready.unlink(missing_ok=True)
            return f"http://{info['host']}:{info['port']}", ready_at
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait(timeout=5)
    tail = (ready.parent / "sandbox.log").read_text(errors="replace")[-2000:]
    raise OperationFailed(f"the sandbox server did not start within {timeout:.0f} s (exit {process.returncode})",
                          f"its output ends with:\n{tail}")


def start_server(state_dir: Path, account: str, timeout: float = START_TIMEOUT_S) -> tuple[int, str]:
    """Start a detached server on a free loopback port; returns (pid, endpoint)."""
    process, ready = spawn_server(state_dir, account)
    return process.pid, wait_ready(process, ready, timeout)[0]


def render(specs: Sequence[StackSpec]) -> list[RenderedStack]:
    """The program rendered over ``specs``, as `gpufleet plan` renders it."""
    from gpufleet.infra.offline.render import render_fleet

    return render_fleet(specs)


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def apply(endpoint: str, rendered: Sequence[RenderedStack], inventory: Path, ids: Path | None = None,
          progress: Callable[[str], None] | None = None) -> AppliedFleet:
    """Apply ``rendered`` into the (empty) sandbox at ``endpoint``; write the inventory (and, with
    ``ids``, the rendered -> emulated id map)."""
    from gpufleet.automation.sandbox.apply import Applier
    from gpufleet.automation.sandbox.outputs import inventory_document

    fleet = Applier(endpoint, SANDBOX_CREDENTIALS, progress=progress).apply(rendered)
    _write_json(inventory, inventory_document(fleet.exports, endpoint))
    if ids is not None:
        _write_json(ids, {"endpoint": endpoint, "ids": dict(fleet.ids.items())})
    return fleet


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int, endpoint: str | None) -> bool:
    if not _alive(pid):
        return False
    if endpoint:
        with contextlib.suppress(Exception):
            return SandboxClient(endpoint, timeout=2).health()["pid"] == pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    return cmdline.exists() and SERVER_MODULE.encode() in cmdline.read_bytes()


def stop_server(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only this PID."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "state": str, "pid": int, "endpoint": str, "inventory": str, "ids": str, "stacks_dir": str,
    "started_at": (int, float), "account": str, "timings": dict, "env": dict}
"""The keys of the sandbox's state file and their types (each optional unless running)."""


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = _state_file(state_dir)
    if not path.exists() and not path.is_symlink():
        return None
    fix = f"remove {path} and run `gpufleet sandbox up`"
    try:
        state = json.loads(read_text(path, "sandbox state"))
    except json.JSONDecodeError:
        raise ConfigError(str(path), "(json)", None, "not valid JSON", fix) from None
    if not isinstance(state, dict):
        raise ConfigError(str(path), "(document)", state, "expected a JSON object", fix)
    for key, kind in STATE_KEYS.items():
        value = state.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(str(path), key, value, f"expected {want}", fix)
    if state.get("state") == "running" and (state.get("pid") is None or state.get("endpoint") is None):
        raise ConfigError(str(path), "pid" if state.get("pid") is None else "endpoint", None,
                          "a running sandbox records its server's pid and endpoint", fix)
    return state


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    path = _state_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _info(state_dir: Path, state: dict[str, Any] | None, live: bool) -> SandboxInfo:
    if state is None:
        return SandboxInfo(state="stopped", state_dir=str(state_dir))
    running = state.get("state") == "running"
    info = SandboxInfo(
        state=("running" if live else "stale") if running else "stopped",
        pid=state.get("pid"), endpoint=state.get("endpoint"), state_dir=str(state_dir),
        inventory=state.get("inventory"), ids=state.get("ids"), stacks_dir=state.get("stacks_dir"),
        started_at=state.get("started_at"),
        timings=state.get("timings", {}), env=state.get("env", {}) if running and live else {},
    )
    if info.state == "running" and info.endpoint:
        with contextlib.suppress(Exception):
            info.reservations = SandboxClient(info.endpoint, timeout=5).reservations()
    return info


def status(state_dir: Path = DEFAULT_STATE_DIR) -> SandboxInfo:
    state = _read_state(state_dir)
    live = bool(state and state.get("state") == "running" and _is_our_server(state["pid"], state.get("endpoint")))
    return _info(state_dir, state, live)


def up(stacks_dir: Path = DEFAULT_STACKS_DIR, state_dir: Path = DEFAULT_STATE_DIR, *,
       inventory: Path | None = None, progress: Callable[[str], None] | None = None,
       rendered: Sequence[RenderedStack] | None = None) -> SandboxInfo:
    """Start the server, apply the rendered program into it, write the inventory. Idempotent when
    running. ``rendered``: a render of ``stacks_dir`` made before (tests render once)."""
    say = progress or (lambda _line: None)
    current = status(state_dir)
    if current.state == "running":
        current.already_running = True
        return current
    specs = load_fleet(stacks_dir)
    platform = next(s for s in specs if s.role is Role.PLATFORM)
    inventory = (inventory or state_dir / "inventory.json").resolve()
    say(f"starting the emulated AWS (moto + gpufleet extension) on 127.0.0.1, platform account {platform.account_id}; "
        f"rendering the program over {len(specs)} stacks from {stacks_dir} meanwhile")
    t0, wall0 = time.monotonic(), time.time()
    process, ready = spawn_server(state_dir, platform.account_id)
    pid = process.pid
    try:
        if rendered is None:
            rendered = render(specs)
        t1 = time.monotonic()
        say(f"rendered {sum(len(r.resources) for r in rendered)} resources in {t1 - t0:.2f} s")
        endpoint, ready_at = wait_ready(process, ready)
        t2, server_s = time.monotonic(), max(0.0, ready_at - wall0)
        say(f"listening on {endpoint} (pid {pid}) {server_s:.2f} s after its start; applying the render")
        fleet = apply(endpoint, rendered, inventory, ids=state_dir.resolve() / "ids.json", progress=say)
        automation_role = fleet.exports[platform.name].get("automationRoleArn")
        operator = create_operator(endpoint, platform.region, automation_role) if automation_role else SANDBOX_CREDENTIALS
        control = SandboxClient(endpoint)
        control.enforce_iam(True)
        control.snapshot()  # POST /_gpufleet/restore: back to the fleet as applied
    except BaseException as err:
        stop_server(pid)
        if isinstance(err, GpufleetError | KeyboardInterrupt):
            raise
        raise OperationFailed(f"building the sandbox failed: {err}; the server (pid {pid}) was stopped",
                              f"see {state_dir / 'sandbox.log'}") from err
    t3 = time.monotonic()
    say(f"applied in {t3 - t2:.2f} s; inventory written to {inventory}")
    state = {"state": "running", "pid": pid, "endpoint": endpoint, "inventory": str(inventory),
             "ids": str(state_dir.resolve() / "ids.json"),
             "stacks_dir": str(stacks_dir), "started_at": time.time(), "account": platform.account_id,
             "timings": {"render_s": round(t1 - t0, 3), "server_s": round(server_s, 3), "apply_s": round(t3 - t2, 3),
                         "total_s": round(t3 - t0, 3)},
             "iam": "enforced", "operator": OPERATOR_USER if operator != SANDBOX_CREDENTIALS else None,
             "env": env_for(endpoint, platform.region, operator)}
    _write_state(state_dir, state)
    return _info(state_dir, state, True)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> SandboxInfo:
    """Stop the recorded server (only if it is still ours) and remove the inventory and id map it wrote."""
    state = _read_state(state_dir)
    if state is None or state.get("state") != "running":
        return _info(state_dir, state, False)
    pid = state["pid"]
    if _is_our_server(pid, state.get("endpoint")):
        stop_server(pid)
        if _alive(pid):
            raise ConflictError(f"the sandbox server (pid {pid}) did not stop", f"kill {pid} by hand")
    for key in ("inventory", "ids"):
        path = Path(state.get(key) or "")
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, IsADirectoryError, AttributeError):
            if json.loads(path.read_text()).get("endpoint") == state.get("endpoint"):
                path.unlink()
    state.update(state="stopped", stopped_at=time.time())
    _write_state(state_dir, state)
    return _info(state_dir, state, False)


def environment(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    info = status(state_dir)
    if info.state != "running":
        raise ConflictError(f"the sandbox is {info.state}", "run `gpufleet sandbox up` first")
    return info.env

"""`make demo`: the capacity workflow end to end on the embedded default, no AWS account.

Runs the real `gpufleet` CLI as subprocesses, printing each command before its output:
plan offline, start the sandbox (emulated AWS on 127.0.0.1 holding the program rendered over
stacks/), show the live fleet, move 2 nodes training -> inference, show it, move them back, stop
the sandbox. A failing
step stops the demo loudly (its exit status is the demo's); the sandbox it started is always
stopped. The demo keeps its own sandbox state in .gpufleet/demo, apart from yours.

    python -m gpufleet.automation.demo
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

STATE_DIR = Path(".gpufleet/demo")
INVENTORY = STATE_DIR / "inventory.json"
STEP_TIMEOUT_S = 600


class StepFailed(Exception):
    def __init__(self, argv: list[str], code: int) -> None:
        super().__init__(f"`{shlex.join(argv)}` exited {code}")
        self.code = code


def command_lines(argv: list[str], width: int) -> str:
    """``$ argv`` as a shell would take it, continued with `` \\`` before an argument that would pass
    ``width`` (an option stays with its value; an argument is never split)."""
    words = [shlex.quote(a) for a in argv]
    groups: list[str] = []
    for word in words:
        if groups and groups[-1].startswith("-") and " " not in groups[-1] and not word.startswith("-"):
            groups[-1] += f" {word}"  # --option value
        else:
            groups.append(word)
    lines, line = [], "$"
    for group in groups:
        if len(line) + 1 + len(group) > width - 2 and line not in ("$", "  "):
            lines.append(line + " \\")
            line = " "
        line += f" {group}"
    return "\n".join([*lines, line])


def gpufleet(*args: str, env: Mapping[str, str] | None = None, capture: bool = False) -> str:
    """Run one CLI command the way a user would, echoing it first."""
    argv = ["gpufleet", *args]
    print("\n" + command_lines(argv, int(os.environ.get("COLUMNS", "80"))), flush=True)
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation", *args], env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE if capture else None, text=True, timeout=STEP_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise StepFailed(argv, done.returncode)
    return done.stdout or ""


def sandbox_status() -> dict:
    """`gpufleet sandbox status --json` (it exits 1 when the sandbox is not running; the JSON says so)."""
    argv = ["sandbox", "status", "--json", "--state-dir", str(STATE_DIR)]
    done = subprocess.run([sys.executable, "-m", "gpufleet.automation", *argv], capture_output=True, text=True,
                          timeout=60, check=False)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stderr, file=sys.stderr)
        raise StepFailed(["gpufleet", *argv], done.returncode or 1) from None


def sandbox_env() -> dict[str, str]:
    """The AWS_* variables of the running demo sandbox (what `eval "$(gpufleet sandbox env)"` sets)."""
    return dict(sandbox_status()["env"])


def main() -> int:
    # The children write to a pipe or this terminal: give them this terminal's real width (80 when unknown).
    os.environ.setdefault("COLUMNS", str(shutil.get_terminal_size((80, 24)).columns))
    for name in [n for n in os.environ if n.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "GPUFLEET_"))]:
        del os.environ[name]  # the demo talks to its own sandbox only
    inv = ("--inventory", str(INVENTORY))
    move = ("--nodes", "2", "--yes", "--probe", "local", *inv)
    started = False
    try:
        gpufleet("plan")
        if sandbox_status()["state"] == "running":
            gpufleet("sandbox", "down", "--state-dir", str(STATE_DIR))  # left over from an interrupted demo
        gpufleet("sandbox", "up", "--state-dir", str(STATE_DIR))
        started = True
        env = sandbox_env()
        print(f'\n$ eval "$(gpufleet sandbox env --state-dir {STATE_DIR})"\n# AWS_ENDPOINT_URL={env["AWS_ENDPOINT_URL"]}')
        gpufleet("status", *inv, env=env)
        gpufleet("rebalance", "--from", "training", "--to", "inference", "--nodes", "2", *inv, env=env)
        gpufleet("rebalance", "--from", "training", "--to", "inference", *move, env=env)
        gpufleet("status", *inv, env=env)
        gpufleet("rebalance", "--from", "inference", "--to", "training", *move, env=env)
        gpufleet("status", *inv, env=env)
        gpufleet("rebalance", "ls", *inv, env=env)
    except StepFailed as failed:
        print(f"\ndemo FAILED: {failed}", file=sys.stderr, flush=True)
        return failed.code or 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        if started:
            try:
                gpufleet("sandbox", "down", "--state-dir", str(STATE_DIR))
            except StepFailed as failed:
                print(f"\ndemo: stopping the sandbox failed: {failed}; see {STATE_DIR / 'sandbox.json'}",
                      file=sys.stderr, flush=True)
                return failed.code or 1
    print("\ndemo done: 2 nodes moved training -> inference and back through the journal.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

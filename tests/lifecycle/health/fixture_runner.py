"""A CommandRunner fake at the node boundary: answers commands with recorded outputs from fixtures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from gpufleet.lifecycle.health.runner import CommandOutput

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "health"


class FixtureRunner:
    """``outputs`` maps a program name to a fixture file name (or None: not installed)."""

    def __init__(self, outputs: Mapping[str, str | None], returncodes: Mapping[str, int] | None = None) -> None:
        self.outputs = dict(outputs)
        self.returncodes = dict(returncodes or {})
        self.calls: list[tuple[str, ...]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if self.outputs.get(name) else None

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandOutput:
        self.calls.append(tuple(argv))
        name = self.outputs.get(argv[0])
        if name is None:
            return CommandOutput(argv=tuple(argv), returncode=127, stderr=f"{argv[0]}: not found")
        text = (FIXTURES / name).read_text()
        code = self.returncodes.get(argv[0], 0)
        return CommandOutput(argv=tuple(argv), returncode=code, stdout=text if code == 0 else "",
                             stderr=text if code else "")


def fake_tools(directory: Path, smi_fixture: str, efa_fixture: str = "fi_info_efa_p5_32.txt",
               dmesg_fixture: str = "dmesg_clean.txt") -> Path:
    """A directory of fake ``nvidia-smi`` / ``fi_info`` / ``dmesg`` that print recorded outputs:
    put it first on a node's PATH to give that node these devices."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, fixture in (("nvidia-smi", smi_fixture), ("fi_info", efa_fixture), ("dmesg", dmesg_fixture)):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\ncat '{FIXTURES / fixture}'\n")
        tool.chmod(0o755)
    return directory

"""The boundary between the checks and the node: every external command goes through a CommandRunner.

Production uses SubprocessRunner (real nvidia-smi, fi_info, dcgmi, dmesg). Tests feed recorded
outputs either with a runner of their own or by putting fake binaries first on ``search_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# Slurm starts HealthCheckProgram with an empty environment: fall back to the usual places.
DEFAULT_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/amazon/efa/bin"


@dataclass(frozen=True, kw_only=True)
class CommandOutput:
    """What one command did."""

    argv: tuple[str, ...]
    returncode: int
    """127: the program is not installed; 124: it ran past its timeout."""
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def missing(self) -> bool:
        return self.returncode == 127

    @property
    def timed_out(self) -> bool:
        return self.returncode == 124

    def describe(self) -> str:
        """One line for a check's detail: which command, how it ended, the first stderr line."""
        if self.missing:
            return f"{self.argv[0]} not found"
        if self.timed_out:
            return f"{' '.join(self.argv)} timed out"
        first = (self.stderr.strip().splitlines() or [""])[0][:160]
        return f"{' '.join(self.argv)} exited {self.returncode}" + (f": {first}" if first else "")


class CommandRunner(Protocol):
    """Runs one command on the node and returns its output; never raises for a failing command."""

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandOutput: ...

    def which(self, name: str) -> str | None:
        """Full path of an installed program, or None."""
        ...


class SubprocessRunner:
    """Runs real programs, looked up on ``search_path`` (PATH, else DEFAULT_SEARCH_PATH)."""

    def __init__(self, search_path: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.search_path = search_path or os.environ.get("PATH") or DEFAULT_SEARCH_PATH
        self.env = {**os.environ, **(env or {}), "PATH": self.search_path, "LC_ALL": "C"}

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.search_path)

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandOutput:
        program = self.which(argv[0])
        if program is None:
            return CommandOutput(argv=tuple(argv), returncode=127, stderr=f"{argv[0]}: not found")
        try:
            done = subprocess.run(
                [program, *argv[1:]], capture_output=True, text=True, timeout=timeout_s,
                env=self.env, check=False, errors="replace",
            )
        except subprocess.TimeoutExpired as err:
            return CommandOutput(argv=tuple(argv), returncode=124, stdout=_text(err.stdout))
        except OSError as err:
            return CommandOutput(argv=tuple(argv), returncode=126, stderr=str(err))
        return CommandOutput(argv=tuple(argv), returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else raw.decode(errors="replace")

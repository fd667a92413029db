"""The error hierarchy shared by the planners, the Pulumi program and the CLI.

The core raises these; only the CLI turns them into exit codes and text. ``code`` is the process
exit code the CLI uses.
"""

from __future__ import annotations


class GpufleetError(Exception):
    """Base error: ``message`` says what is wrong, ``hint`` what to do about it."""

    code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {"type": type(self).__name__, "code": self.code, "message": self.message, "hint": self.hint}


class BadInputError(GpufleetError):
    """The user gave us something we cannot use (a flag, a file, a value). Nothing was changed."""

    code = 2


class ConfigError(BadInputError):
    """A stack file or job file holds a value we reject; the message names file, key and value."""

    def __init__(self, source: str, key: str, value: object, problem: str, hint: str | None = None):
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
        super().__init__(f"{source}: {key} = {value!r}: {problem}", hint)

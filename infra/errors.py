"""The error hierarchy of gpufleet, in one module: the planners, the Pulumi program, the automation
core and the CLI all raise these.

The core raises them; only the CLI turns them into exit codes and text. ``code`` is the process
exit code the CLI uses:

    1  GpufleetError      something unexpected
    2  BadInputError      a flag, file or value we reject (ConfigError: names file, key, value)
    3  AwsError           an AWS call failed after retries (AwsCallError says which call)
    4  ConflictError      another operation holds the lease, or the state changed under us
    5  OperationFailed    a long operation stopped: rolled back, or resumable (the hint says which)
    6  OrchestratorError  Slurm or Kubernetes refused a call or could not be reached
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


class AwsError(GpufleetError):
    """An AWS call failed after retries; nothing was left half done (see the journal)."""

    code = 3


class AwsCallError(AwsError):
    """An AWS call failed (after the SDK's retries); the fields say which and how."""

    def __init__(self, message: str, hint: str | None = None, *, aws_code: str = "", operation: str = "",
                 service: str = "", stack: str = "", http_status: int | None = None, retries: int = 0) -> None:
        super().__init__(message, hint)
        self.aws_code = aws_code
        """The AWS error code (Throttling, InsufficientInstanceCapacity, ...); "" for transport errors."""
        self.operation = operation
        self.service = service
        self.stack = stack
        self.http_status = http_status
        self.retries = retries

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(aws_code=self.aws_code, operation=self.operation, service=self.service, stack=self.stack,
                   http_status=self.http_status, retries=self.retries)
        return out


class ConflictError(GpufleetError):
    """Another operation holds the lock, or the state changed under us."""

    code = 4


class OperationFailed(GpufleetError):
    """A long operation stopped; it was rolled back or can be resumed (the hint says which)."""

    code = 5


class OrchestratorError(GpufleetError):
    """Slurm or Kubernetes refused a call or could not be reached."""

    code = 6


class SlurmError(OrchestratorError):
    """A Slurm command failed, timed out or is not installed."""


class KubernetesError(OrchestratorError):
    """The Kubernetes API refused a call or could not be reached."""

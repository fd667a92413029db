"""Errors the automation core raises; the CLI maps ``code`` to the exit status."""

from infra.errors import BadInputError, ConfigError, GpufleetError


class AwsError(GpufleetError):
    """An AWS call failed after retries; nothing was left half done (see the journal)."""

    code = 3


class ConflictError(GpufleetError):
    """Another operation holds the lock, or the state changed under us."""

    code = 4


class OperationFailed(GpufleetError):
    """A long operation stopped; it was rolled back or can be resumed (the hint says which)."""

    code = 5


__all__ = ["AwsError", "BadInputError", "ConfigError", "ConflictError", "GpufleetError", "OperationFailed"]

"""Rendered Pulumi inputs as AWS API parameters, typed by botocore's service model.

The AWS provider turns a resource's inputs into the parameters of its create call: camelCase keys
become the API's member names, launch-template booleans written as ``"true"``/``"false"`` strings
become booleans, tag maps become ``[{Key, Value}]``. ``to_params`` does the same for a nested input
structure against the botocore shape of the parameter it fills. A key with no member of that name
(after ``renames``) raises ``UnappliedInput``: nothing the program declares is dropped silently, so
a new input in the program makes the sandbox say what it does not apply yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import Shape


class UnappliedInput(ValueError):
    """A rendered input the sandbox has no API member for."""


def member_name(key: str) -> str:
    """``capacityReservationTarget`` -> ``CapacityReservationTarget``."""
    return key[:1].upper() + key[1:]


def to_params(value: Any, shape: Shape, *, where: str, renames: Mapping[str, str] | None = None) -> Any:
    """``value`` (rendered inputs) as the parameter of ``shape``; ``where`` names it in errors."""
    renames = renames or {}
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            raise UnappliedInput(f"{where}: expected an object for {shape.name}, got {value!r}")
        members = shape.members  # type: ignore[attr-defined]
        out = {}
        for key, item in value.items():
            if item is None:
                continue
            name = renames.get(key, member_name(key))
            if name not in members:
                raise UnappliedInput(f"{where}.{key}: no {shape.name} member {name!r} to apply it to")
            out[name] = to_params(item, members[name], where=f"{where}.{key}", renames=renames)
        return out
    if kind == "list":
        member = shape.member  # type: ignore[attr-defined]
        if isinstance(value, Mapping) and member.type_name == "structure" and {"Key", "Value"} <= set(member.members):
            return [{"Key": str(k), "Value": str(v)} for k, v in value.items()]
        if not isinstance(value, list | tuple):
            raise UnappliedInput(f"{where}: expected a list for {shape.name}, got {value!r}")
        return [to_params(item, member, where=f"{where}[{i}]", renames=renames) for i, item in enumerate(value)]
    if kind == "boolean":
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise UnappliedInput(f"{where}: expected a boolean, got {value!r}")
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int | float | str) or int(value) != float(value):
            raise UnappliedInput(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise UnappliedInput(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise UnappliedInput(f"{where}: {kind} parameters are not applied by the sandbox")

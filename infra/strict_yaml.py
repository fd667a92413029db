"""Reading the YAML files people write (stack files, job files): a duplicate key is an error naming
both lines, and a path that is a directory, unreadable or not UTF-8 is a ConfigError naming it.

PyYAML keeps the last of two equal keys silently, so ``holdsPhi: true`` followed by
``holdsPhi: false`` turned the PHI guardrails off with no finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpufleet.infra.errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """Two equal keys in one mapping."""

    def __init__(self, key: object, first: int, second: int, mark: yaml.Mark) -> None:
        self.key, self.first, self.second = key, first, second
        super().__init__(None, None, f"duplicate key {key!r} on lines {first} and {second}", mark)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with two equal keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, list | dict):
                continue  # unhashable: SafeLoader reports it below
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line, key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, StrictLoader.construct_mapping)


def read_text(path: Path, what: str) -> str:
    """The file's text, or a ConfigError naming the file (missing, a directory, unreadable, not UTF-8)."""
    source = str(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "(file)", source, f"{what} not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "(file)", source, f"is a directory, not a {what}") from None
    except PermissionError:
        raise ConfigError(source, "(file)", source, f"{what} is not readable (permission denied)") from None
    except UnicodeDecodeError as err:
        raise ConfigError(source, "(file)", source, f"{what} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(source, "(file)", source, f"{what} cannot be read: {err.strerror}") from None


def load(path: Path, what: str) -> Any:
    """Parse one YAML document strictly; every failure is a ConfigError naming the file."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as err:
        raise ConfigError(str(path), str(err.key), None,
                          f"duplicate key on lines {err.first} and {err.second} (YAML would keep the last silently)") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "(yaml)", None, f"not valid YAML: {err}") from None

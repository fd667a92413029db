"""docs/components.md says what the code has: a section per component with its type token, every
field of the Args it documents (no more, no fewer), and the example program as it is on disk."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re

import pulumi

from tests.conftest import REPO

DOC = (REPO / "docs" / "components.md").read_text()
SECTION = re.compile(r"^## (\w+)\n\n`from (\S+) import [^`]*` · type `([^`]+)`\n(.*?)(?=^## |\Z)", re.M | re.S)
TABLE = re.compile(r"^`(\w+)`:\n\n\| field \|.*?\n\|---.*?\n((?:\|.*\n?)*)", re.M)


def sections() -> dict[str, tuple[str, str, str]]:
    return {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in SECTION.finditer(DOC)}


def components() -> dict[str, type]:
    found = {}
    for path in sorted((REPO / "infra").glob("*.py")):
        module = importlib.import_module(f"gpufleet.infra.{path.stem}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, pulumi.ComponentResource) and obj.__module__ == module.__name__:
                found[name] = obj
    return found


def test_every_component_has_a_section_with_its_module_and_type_token():
    documented = sections()
    for name, cls in components().items():
        assert name in documented, f"docs/components.md has no section for {name}"
        module, token, _ = documented[name]
        assert module == cls.__module__, name
        assert f'"{token}"' in inspect.getsource(cls), f"{name}: the page says type {token}"
        assert name in importlib.import_module(module).__all__, f"{module}.__all__ lacks {name}"


def test_every_documented_args_table_lists_exactly_its_fields():
    tables = 0
    for name, (module, _, body) in sections().items():
        for table in TABLE.finditer(body):
            cls = getattr(importlib.import_module(module), table.group(1))
            rows = re.findall(r"^\| `(\w+)` \|", table.group(2), re.M)
            assert rows == [f.name for f in dataclasses.fields(cls)], f"{name}: table {table.group(1)}"
            tables += 1
    assert tables >= len(components())


def test_the_example_on_the_page_is_the_file():
    source = (REPO / "examples" / "components_program.py").read_text()
    [block] = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert source.endswith(block) and block.startswith("import pulumi\n")

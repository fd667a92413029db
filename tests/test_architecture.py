"""The imports hold the architecture (DESIGN.md, Layout):

- everything is imported through the ``gpufleet.`` namespace, never as a bare ``infra``/``automation``
  /``lifecycle`` (those names work from the repository root by accident and collide when installed);
- lifecycle (the node bundle) imports only lifecycle, the standard library and the node's packages;
- the automation core never imports the CLI or the screen libraries (typer, rich);
- the infrastructure (components, planners, guardrails) never imports the automation.

Read from the source with ``ast``, so an import that only works because the repository root is on
``sys.path`` is still caught.
"""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARTS = ("infra", "automation", "lifecycle")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ["gpufleet", *path.relative_to(REPO).with_suffix("").parts[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def sources(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (REPO / part).rglob("*.py") if "__pycache__" not in p.parts)


def violations(paths: list[Path], forbidden: callable) -> list[str]:
    # Parsed in a fresh thread: CPython 3.11.7's AST validator compares its recursion counter with the
    # thread's, and deep stacks left by other tests in this thread make ast.parse raise SystemError.
    with ThreadPoolExecutor(max_workers=1) as worker:
        found = list(worker.map(imports_of, paths))
    return [f"{p.relative_to(REPO)}:{line}: {module}" for p, imports in zip(paths, found, strict=True)
            for line, module in imports if forbidden(module)]


def top(module: str) -> str:
    return module.split(".")[0]


def test_nothing_imports_the_bare_folder_names():
    paths = sources(*PARTS, "stacks", "tests", "bench")
    assert violations(paths, lambda m: top(m) in PARTS) == []


def test_lifecycle_imports_only_lifecycle():
    def outside(module: str) -> bool:
        return top(module) == "gpufleet" and not module.startswith("gpufleet.lifecycle")

    assert violations(sources("lifecycle"), outside) == []


def test_the_core_never_imports_the_cli_or_the_screen():
    core = [p for p in sources("automation") if "cli" not in p.relative_to(REPO / "automation").parts
            and p.name != "__main__.py"]  # ``python -m gpufleet.automation`` starts the CLI

    def screen(module: str) -> bool:
        return top(module) in {"typer", "rich", "click"} or module.startswith("gpufleet.automation.cli")

    assert violations(core, screen) == []


def test_infrastructure_never_imports_the_automation():
    assert violations(sources("infra"), lambda m: m.startswith("gpufleet.automation")) == []


@pytest.mark.parametrize("part", PARTS)
def test_every_package_is_typed(part):
    assert (REPO / part / "py.typed").is_file()

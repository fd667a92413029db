"""A control-plane archive: the gpufleet modules an entry point imports, found by reading their
import statements from the entry module outward (every ``gpufleet.*`` import, at any depth of the
module, so an import inside a function is packaged too), PyYAML's pure-Python modules (the
python3.12 runtime has boto3 and botocore but no yaml), and the fleet files under ``fleet/``.
The scheduler's Lambda function packages its handler's closure (the default root); the Slurm
head's healer service the healer's entry point's (infra/slurm_healer.py).

Built at deploy time from the installed package, so the archive is the code of the deployment.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

import gpufleet.infra

__all__ = ["HANDLER", "HANDLER_MODULE", "archive_files", "module_closure", "third_party_imports"]

HANDLER_MODULE = "gpufleet.automation.schedule.lambda_handler"
HANDLER = f"{HANDLER_MODULE}.handler"
PACKAGE_ROOT = Path(gpufleet.infra.__file__).resolve().parent.parent
"""Holds infra/, automation/ and lifecycle/ side by side (the editable checkout or site-packages/gpufleet)."""
MAX_MODULES = 500


def _file_of(module: str) -> Path | None:
    """The source of ``gpufleet.<top>.<rest>`` under PACKAGE_ROOT (None: not one of ours)."""
    parts = module.split(".")
    if parts[0] != "gpufleet" or len(parts) < 2:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m.startswith("gpufleet.")}


def module_closure(root: str = HANDLER_MODULE) -> dict[str, Path]:
    """Module name -> source file of ``root`` and every gpufleet module it imports, with the
    ``__init__`` of each package on the way (Python runs them on import)."""
    seen: dict[str, Path] = {}
    todo = [root]
    while todo:
        if len(seen) > MAX_MODULES:
            raise RuntimeError(f"{root}: over {MAX_MODULES} modules; an import cycle through a generated name?")
        module = todo.pop()
        if module in seen:
            continue
        path = _file_of(module)
        if path is None:
            continue
        seen[module] = path
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))
        todo.extend(_imports(path, module))
    return seen


def third_party_imports(root: str = HANDLER_MODULE) -> set[str]:
    """Top-level names of what ``root``'s closure imports from outside gpufleet and the standard
    library, at any depth (what the archive's host must provide, or the archive carries: yaml)."""
    found: set[str] = set()
    for path in module_closure(root).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name != "gpufleet" and name not in sys.stdlib_module_names}


def _yaml_files() -> dict[str, Path]:
    spec = importlib.util.find_spec("yaml")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PyYAML is not installed: the scheduler function packages it")
    root = Path(next(iter(spec.submodule_search_locations)))
    return {f"yaml/{p.name}": p for p in sorted(root.glob("*.py"))}


def archive_files(fleet: Mapping[str, str], root: str = HANDLER_MODULE) -> dict[str, str]:
    """Archive path -> text: the code of ``root``'s closure, and ``fleet`` (path under ``fleet/`` -> text)."""
    closure = module_closure(root)
    code = list(closure.values())
    # Package data the modules read beside them: data/ (price and instance tables) and tables in
    # the package folder itself (the healer's decisions.csv).
    code += [f for m, p in closure.items() if p.name == "__init__.py"
             for f in [*sorted((p.parent / "data").glob("*")), *sorted(p.parent.glob("*.csv"))] if f.is_file()]
    files = {f"gpufleet/{p.relative_to(PACKAGE_ROOT).as_posix()}": p.read_text(encoding="utf-8") for p in code}
    files.update({name: p.read_text(encoding="utf-8") for name, p in _yaml_files().items()})
    files.update({f"fleet/{name}": text for name, text in fleet.items()})
    return dict(sorted(files.items()))

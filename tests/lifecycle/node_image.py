"""A node as far as the bundle can tell: an interpreter that holds only the node's packages, and the
bundle installed where the user data puts it.

The interpreter is a throwaway venv (``python -m venv --without-pip``, no system site-packages)
whose site-packages holds nothing but symlinks to the top-level modules of the distributions
``lifecycle/node-requirements.txt`` names and the distributions those require, found through
``importlib.metadata`` of the venv running the tests. The repository, its editable install and every
other package stay out of sight: a lifecycle module importing ``gpufleet.infra`` (or boto3, pulumi,
typer) fails there as it would on a node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gpufleet.lifecycle.bootstrap.bundle import LIFECYCLE_DIR, NODE_REQUIREMENTS
from gpufleet.lifecycle.layout import PACKAGE_PATH


class MissingNodePackage(AssertionError):
    """A distribution the node needs is not installed where the tests run."""


def node_requirements(path: Path = LIFECYCLE_DIR / NODE_REQUIREMENTS) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every distribution the requirements need, transitively (markers evaluated, extras followed)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(req, "") for req in requirements]
    while todo:
        req, wanted_by = todo.pop()
        key = canonicalize_name(req.name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise MissingNodePackage(f"{req} ({wanted_by or NODE_REQUIREMENTS}) is not installed in {sys.prefix}") from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise MissingNodePackage(f"{req} ({wanted_by or NODE_REQUIREMENTS}): {sys.prefix} has {dist.version}")
        found[key] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in ("", *req.extras)):
                todo.append((sub, req.name))
    return found


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The names a distribution puts into site-packages: packages, modules, its .dist-info, .libs."""
    if not dist.files:
        raise AssertionError(f"{dist.metadata['Name']}: no RECORD, cannot tell which files are its own")
    names = {f.parts[0] for f in dist.files if f.parts and f.parts[0] != ".."}
    # .pth files run code at every start-up (setuptools' distutils hack): not part of a node's imports.
    return {n for n in names if n != "__pycache__" and not n.endswith(".pth")}


def make_node_python(venv_dir: Path, requirements: list[Requirement] | None = None) -> Path:
    """A venv holding only the node's distributions; returns its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True, timeout=120)
    python = venv_dir / "bin" / "python"
    site = venv_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert site.is_dir() and not any(site.iterdir()), f"{site}: a fresh venv should start empty"
    for dist in closure(node_requirements() if requirements is None else requirements).values():
        for name in top_level_entries(dist):
            target = Path(dist.locate_file(name))
            if target.exists() and not (site / name).exists():
                (site / name).symlink_to(target)
    return python


def install_bundle(files: Mapping[str, str], install_dir: Path) -> Path:
    """The bundle as the user data leaves it: ``<install_dir>/gpufleet/lifecycle/<path>``."""
    assert not install_dir.exists() or not any(install_dir.iterdir()), f"{install_dir} is not empty"
    lifecycle = install_dir / PACKAGE_PATH
    for rel, text in files.items():
        path = lifecycle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)  # as aws s3 cp leaves them: no file is executable until on_create says so
    return lifecycle


@dataclass(frozen=True)
class Node:
    """The node interpreter and an installed bundle."""

    python: Path
    install_dir: Path
    home: Path
    """An empty directory: the working directory and HOME of every process (cwd leaks nothing)."""

    @property
    def lifecycle(self) -> Path:
        return self.install_dir / PACKAGE_PATH

    def env(self, path: str, **extra: str) -> dict[str, str]:
        """A node process's environment: nothing inherited from the test run."""
        return {"PATH": path, "HOME": str(self.home), "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1", **extra}

    def run_python(self, *argv: str, path: str = "/usr/bin:/bin", timeout: float = 300,
                   **env: str) -> subprocess.CompletedProcess[str]:
        """``python -P ...`` with PYTHONPATH=<install dir>, as the node's scripts start it."""
        return subprocess.run([str(self.python), "-P", *argv], cwd=self.home, capture_output=True, text=True,
                              env=self.env(path, PYTHONPATH=str(self.install_dir), **env), timeout=timeout)

    def run_script(self, script: str, *, path: str = "/usr/bin:/bin", timeout: float = 300,
                   env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A bundle script with bash, as on_create or slurmd start it (no PYTHONPATH given)."""
        full_env = dict(env) if env is not None else self.env(path)
        assert "PYTHONPATH" not in full_env
        return subprocess.run(["bash", str(self.lifecycle / script)], cwd=self.home, capture_output=True,
                              text=True, env=full_env, timeout=timeout)


def is_inside(path: str | os.PathLike[str], directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def node_python_and_bundle(tmp_path_factory: Any, files: Mapping[str, str]) -> tuple[Path, Path]:
    """(an interpreter holding only the node's packages, an install dir holding ``files`` as the
    bundle), in the session's temporary directories; the test is skipped where a node package is
    missing here."""
    try:
        python = make_node_python(tmp_path_factory.mktemp("node-venv") / "venv")
    except MissingNodePackage as missing:
        pytest.skip(f"the node's packages: {missing}")
    install_dir = tmp_path_factory.mktemp("opt") / "gpufleet"
    install_bundle(files, install_dir)
    return python, install_dir

"""The healer's container image, checked without docker: the Dockerfile parsed (dockerfile-parse)
and held to its rules, and its requirements held to the archive builder's (one source of truth:
the third-party imports of the healer's closure that the archive leaves to its host)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import requires, version

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gpufleet.infra import healer_image
from gpufleet.infra.healer_archive import (
    BUNDLED,
    ENTRY_MODULE,
    LEFT_TO_HOST,
    NOT_RUN_BY_THE_SERVICE,
)
from gpufleet.infra.scheduler_archive import third_party_imports

IMAGE_MARKERS = {"python_version": healer_image.IMAGE_PYTHON, "python_full_version": f"{healer_image.IMAGE_PYTHON}.8",
                 "sys_platform": "linux", "platform_system": "Linux", "platform_python_implementation": "CPython",
                 "implementation_name": "cpython", "os_name": "posix", "platform_machine": "x86_64", "extra": ""}
"""The base image's environment markers (python:3.12.8-slim on linux/amd64)."""
NEVER_IN_THE_IMAGE = {"pulumi", "pulumi-aws", "pulumi-eks", "pulumi-kubernetes", "torch", "typer", "rich", "numpy"}


def instructions() -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(healer_image.DOCKERFILE))
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def pinned() -> dict[str, str]:
    pins = {}
    for line in healer_image.REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, at = line.partition("==")
            assert sep and at and not re.search(r"[<>;\[ ]", line), f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = at
    return pins


def dependency_closure(distributions: set[str]) -> set[str]:
    """The distributions and everything they require in the image's environment."""
    seen: set[str] = set()
    todo = list(distributions)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(IMAGE_MARKERS):
                todo.append(requirement.name)
    return seen


def test_the_healers_closure_imports_only_what_the_archive_carries_or_leaves_to_its_host():
    assert third_party_imports(ENTRY_MODULE) == set(LEFT_TO_HOST) | BUNDLED | set(NOT_RUN_BY_THE_SERVICE)


def test_the_image_installs_exactly_what_the_archive_leaves_to_its_host_at_the_tested_versions():
    expected = dependency_closure(set(LEFT_TO_HOST.values()))
    pins = pinned()
    regenerated = "\n".join(f"{n}=={version(n)}" for n in sorted(expected))
    assert set(pins) == expected, f"requirements.txt should pin:\n{regenerated}"
    assert pins == {n: version(n) for n in expected}, f"requirements.txt should pin:\n{regenerated}"
    assert not set(pins) & NEVER_IN_THE_IMAGE


def test_the_eks_path_loads_no_torch_typer_rich_or_pulumi():
    """What the service's pass imports on EKS (the closure's torch import is the local probe's)."""
    modules = ["gpufleet.automation.heal.__main__", "gpufleet.automation.heal.kube_service",
               "gpufleet.automation.heal.sources", "gpufleet.automation.health.replace",
               "gpufleet.automation.health.kube_probe", "gpufleet.automation.orchestrators.kubernetes"]
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "from gpufleet.automation.health.replace import default_probes\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} & {'torch', 'typer', 'rich', 'pulumi'})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_dockerfile_builds_from_a_pinned_slim_base_as_a_non_root_user():
    steps = instructions()
    froms = [v for i, v in steps if i == "FROM"]
    assert len(froms) == 1 and steps[0][0] == "FROM"
    image, _, tag = froms[0].partition(":")
    assert image == "python" and re.fullmatch(rf"{re.escape(healer_image.IMAGE_PYTHON)}\.\d+-slim-[a-z]+", tag), froms
    users = [(n, v) for n, (i, v) in enumerate(steps) if i == "USER"]
    assert users and users[-1][1] == f"{healer_image.RUN_AS}:{healer_image.RUN_AS}"
    assert all(i not in ("RUN", "COPY", "ADD") for i, _ in steps[users[-1][0]:]), "nothing runs after USER"
    assert not any(i == "ADD" for i, _ in steps), "COPY only: ADD fetches URLs and unpacks archives"
    [entrypoint] = [v for i, v in steps if i == "ENTRYPOINT"]
    assert tuple(json.loads(entrypoint)) == healer_image.ENTRYPOINT  # exec form: signals reach python
    assert steps[-1][0] in ("ENTRYPOINT", "CMD") and not any(i == "CMD" for i, _ in steps)


def test_the_dockerfile_installs_only_the_pinned_requirements_and_the_archive():
    steps = instructions()
    runs = [v for i, v in steps if i == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1
    install = installs[0]
    assert "--no-deps" in install and "--no-cache-dir" in install and "pip check" in install
    assert re.search(r"-r \S*/requirements\.txt", install)
    assert not any(word in r for r in runs for word in ("apt-get", "curl ", "wget ", "sudo"))
    copies = [v.split() for i, v in steps if i == "COPY"]
    assert sorted(c[0] for c in copies) == ["healer/", "requirements.txt"]
    env = " ".join(v for i, v in steps if i == "ENV")
    assert "PYTHONPATH=/opt/gpufleet/healer" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert not re.search(r"(?i)(secret|password|token|aws_access)", env)


def test_the_build_context_holds_the_dockerfile_requirements_and_the_archive(tmp_path):
    context = tmp_path / "context"
    written = healer_image.build_context(context)
    names = {p.relative_to(context).as_posix() for p in written}
    assert {"Dockerfile", "requirements.txt", "healer/gpufleet/automation/heal/__main__.py",
            "healer/gpufleet/automation/heal/decisions.csv", "healer/yaml/__init__.py"} <= names
    assert not any(n.startswith("healer/fleet/") for n in names)  # the inventory is the ConfigMap's
    # What the Dockerfile copies is there.
    for source in (v.split()[0] for i, v in instructions() if i == "COPY"):
        assert (context / source).exists(), source
    with pytest.raises(FileExistsError):
        healer_image.build_context(context)
    assert healer_image.main([str(tmp_path / "again")]) == 0 and healer_image.main([]) == 2

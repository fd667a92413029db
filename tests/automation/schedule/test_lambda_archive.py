"""The scheduler function's archive runs on its own: built by the platform's code into an empty
directory, its handler imports and runs a pass with an interpreter that has only the archive and
what the python3.12 Lambda runtime provides (boto3, botocore and their dependencies): no pulumi,
torch, typer, rich, moto, matplotlib, nor this checkout's gpufleet."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gpufleet.infra.scheduler_archive import HANDLER_MODULE, archive_files
from tests.bare_python import link_packages, run_bare, unpack
from tests.conftest import REPO

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""What the python3.12 runtime ships besides the standard library."""
ABSENT = ("pulumi", "pulumi_aws", "torch", "typer", "rich", "moto", "matplotlib", "numpy")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return link_packages(RUNTIME_PACKAGES, tmp_path_factory.mktemp("lambda-runtime"))


def build(tmp_path: Path, fleet: dict[str, str]) -> Path:
    return unpack(archive_files(fleet), tmp_path / "var-task")


def run_in_lambda(task: Path, runtime: Path, code: str,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_bare(task, runtime, code, env=env, timeout=300, cwd=task)


def test_the_handler_imports_from_the_archive_alone(tmp_path: Path, runtime: Path) -> None:
    task = build(tmp_path, {"stacks/Pulumi.platform.yaml": (REPO / "stacks" / "Pulumi.platform.yaml").read_text()})
    probe = (f"import importlib, importlib.util as u, json; m = importlib.import_module({HANDLER_MODULE!r})\n"
             f"print(json.dumps({{'file': m.__file__, 'yaml': __import__('yaml').__file__, "
             f"'present': [n for n in {list(ABSENT)!r} if u.find_spec(n) is not None], "
             f"'loaded': sorted(n for n in sys.modules if n.split('.')[0] in {list(ABSENT)!r})}}))")
    done = run_in_lambda(task, runtime, probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert Path(seen["file"]).is_relative_to(task) and Path(seen["yaml"]).is_relative_to(task), seen
    assert seen["present"] == [] and seen["loaded"] == [], seen


def test_a_pass_without_a_packaged_inventory_fails_naming_it(tmp_path: Path, runtime: Path) -> None:
    task = build(tmp_path, {"stacks/Pulumi.platform.yaml": (REPO / "stacks" / "Pulumi.platform.yaml").read_text()})
    call = (f"from {HANDLER_MODULE} import handler\n"
            "from gpufleet.infra.errors import GpufleetError\n"
            "try:\n    handler({}, None)\nexcept GpufleetError as err:\n    print(type(err).__name__, err.code, err)\n")
    done = run_in_lambda(task, runtime, call)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigError 2 ") and str(task / "fleet" / "inventory.json") in done.stdout, done.stdout

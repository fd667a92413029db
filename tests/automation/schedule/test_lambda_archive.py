"""The scheduler function's archive runs on its own: built by the platform's code into an empty
directory, its handler imports and runs a pass with an interpreter that has only the archive and
what the python3.12 Lambda runtime provides (boto3, botocore and their dependencies): no pulumi,
torch, typer, rich, moto, matplotlib, nor this checkout's gpufleet."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.infra.scheduler_archive import HANDLER_MODULE, archive_files
from tests.conftest import REPO

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""What the python3.12 runtime ships besides the standard library."""
ABSENT = ("pulumi", "pulumi_aws", "torch", "typer", "rich", "moto", "matplotlib", "numpy")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (site / source.name).symlink_to(source)
    return site


def build(tmp_path: Path, fleet: dict[str, str]) -> Path:
    task = tmp_path / "var-task"
    for path, text in archive_files(fleet).items():
        target = task / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return task


def run_in_lambda(task: Path, runtime: Path, code: str,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages, no PYTHONPATH, no user site; the path is the archive then the runtime's.
    prelude = f"import sys; sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True, text=True,
                          timeout=300, cwd=task, env=env)


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

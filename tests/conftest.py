"""Test-wide rules: engine markers, and with CI=true a skip is a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hypothesis  # noqa: F401 (see below)
import pytest

# hypothesis is imported here, at collection, not first by its plugin's terminal summary: there,
# deep in pytest's hooks, CPython 3.11.7 failed to compile it under assertion rewriting
# ("SystemError: AST constructor recursion depth mismatch", an interpreter bug, not a test failure)
# after runs without a hypothesis test.

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine when an engine is missing; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"engine missing in CI: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)
    require(path is not None, f"{name} is not installed (apt-get install it, or run .ci/run)")
    return path  # type: ignore[return-value]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {report.longrepr}"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def make_local_slurm(request):
    """Factory for real local Slurm clusters (see tests/slurm_harness.py); stops each at teardown.

    Each cluster lives in a short /tmp/gpufleet-slurm-* directory (Slurm's socket paths must stay
    under 108 bytes), removed after a passing test and kept, logs and all, after a failing one.
    """
    for name in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "unshare"):
        require_binary(name)
    require(os.geteuid() == 0, "the local Slurm cluster needs root (PID namespaces, SlurmUser)")
    from slurm_harness import start_local_slurm

    started = []
    failures_before = request.session.testsfailed

    def make(**kwargs):
        cluster = start_local_slurm(**kwargs)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()
        if request.session.testsfailed == failures_before:
            shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def local_slurm(make_local_slurm):
    """A started local Slurm cluster: slurmctld + node1..node3 idle in the training stack's first partition."""
    return make_local_slurm()


def _weight(item: pytest.Item) -> int:
    """Engine tiers first: their files run longest, and under xdist (`make test`) a long file
    started last is the run's tail."""
    marks = {m.name for m in item.iter_markers()}
    return 0 if marks & {"slurm", "torch"} else 1 if "emulator" in marks else 2


@pytest.hookimpl(trylast=True)  # after tests/automation's hook has marked the sandbox's users
def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "numprocesses", None):
        return  # one process: the order does not change the run's length
    # Stable: a file's tests keep their order; every xdist worker sorts the same collection alike.
    items.sort(key=_weight)

"""The reference fleet rendered once per session, and the mutation score printed at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
from guardrail_fleet import RESULTS, Fleet

from gpufleet.infra import stackfile
from gpufleet.infra.offline.render import render_fleet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    specs = [stackfile.load_stack(p) for p in stackfile.discover_stacks(REPO / "stacks")]
    return Fleet(specs=specs, stacks={r.spec.name: r for r in render_fleet(specs)})


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(RESULTS, {})
    if not results:
        return
    caught = sum(1 for _, ok, _ in results.values() if ok)
    terminalreporter.write_sep("=", f"guardrail mutation score: {caught}/{len(results)} caught by the intended rule")
    for mutation, (rule, ok, fired) in sorted(results.items()):
        if not ok:
            terminalreporter.write_line(f"MISSED {mutation}: expected {rule}, fired {', '.join(fired) or 'nothing'}")

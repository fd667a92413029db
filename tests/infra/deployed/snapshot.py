"""Write the deployed URNs of the reference stacks (tests/infra/deployed/<stack>.urns).

Run it from a checkout of the commit that is deployed, never from the change under review (the
list is what the engine holds state for; a rename must alias it, not rewrite it):

    git worktree add /tmp/deployed <deployed commit>
    cd /tmp/deployed && .venv/bin/python tests/infra/deployed/snapshot.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpufleet.infra import stackfile
from gpufleet.infra.offline.render import PROJECT, render_fleet

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def header(stack: str, revision: str, count: int) -> str:
    return (f"# URNs of stack {stack} at {revision} ({count}), as the Pulumi engine names them.\n"
            "# Deployed identities: a render must keep each one, or alias it (tests/infra/test_identity.py).\n")


def main() -> None:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    specs = [stackfile.load_stack(p) for p in stackfile.discover_stacks(REPO / "stacks")]
    for stack in render_fleet(specs):
        urns = sorted(r.urn for r in stack.resources)
        assert all(u.startswith(f"urn:pulumi:{stack.spec.name}::{PROJECT}::") for u in urns)
        (HERE / f"{stack.spec.name}.urns").write_text(header(stack.spec.name, revision, len(urns))
                                                     + "".join(f"{u}\n" for u in urns))


if __name__ == "__main__":
    main()

"""The scheduler function's handler, from its archive alone (an interpreter with only the archive
and the Lambda runtime's boto3), runs a real pass against the sandbox: inside the window it moves
the pool's free slot into inference through the journaled engine (the first of the window's moves,
one a pass), as `schedule reconcile` does."""

from __future__ import annotations

import json
import os

import pytest

from tests.automation.rebalance.test_schedule_reconcile import IN_WINDOW, SERVE, TRAIN
from tests.automation.schedule.test_lambda_archive import build, run_in_lambda

pytestmark = pytest.mark.emulator

from tests.automation.schedule.test_lambda_archive import runtime  # noqa: E402,F401  (the fixture)


def test_the_packaged_handler_runs_a_pass_against_the_sandbox(fleet, sandbox, runtime, tmp_path) -> None:  # noqa: F811
    task = build(tmp_path, {"stacks/Pulumi.platform.yaml": (sandbox.stacks_dir / "Pulumi.platform.yaml").read_text(),
                            "inventory.json": fleet.inventory_path.read_text()})
    event = {"at": IN_WINDOW, "probe": "orchestrator"}
    call = (f"import json\nfrom gpufleet.automation.schedule.lambda_handler import handler\n"
            f"print(json.dumps(handler({event!r}, None)))")
    done = run_in_lambda(task, runtime, call, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    [move] = result["started"]
    assert (move["from_role"], move["to_role"], move["nodes"], move["state"]) == ("released", "inference", 1, "DONE")
    assert fleet.desired()[TRAIN] == 5 and fleet.desired()[SERVE] == 3
    fleet.check_invariant()

"""Tell the scheduler about each committed checkpoint: on Slurm, the job's comment.

``checkpoint=<unix time> checkpoint_s=<seconds the save took>`` is the contract the control plane
reads: the rebalancer prefers nodes whose jobs checkpointed recently, and the healer gives a
drained node's jobs a grace from ``checkpoint_s`` between the checkpoint signal and its requeue
(gpufleet.automation.heal.grace). Call it on one rank, after the commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping


def publish_checkpoint(save_s: float, env: Mapping[str, str] = os.environ, at: float | None = None) -> bool:
    """Write the comment of this Slurm job; False outside Slurm (nothing to tell)."""
    job = env.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol", path=env.get("PATH"))
    if not job or scontrol is None:
        return False
    comment = f"checkpoint={time.time() if at is None else at:.0f} checkpoint_s={save_s:.2f}"
    done = subprocess.run([scontrol, "update", f"JobId={job}", f"Comment={comment}"], env=dict(env), timeout=30,
                          check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return done.returncode == 0

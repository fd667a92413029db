"""Render a job file as an sbatch script.

Failure handling, end to end:
- node failure: ``--requeue`` puts the job back in the queue; it starts again from the top and
  the workers resume from the newest committed checkpoint;
- worker crash: torchrun restarts the worker group (``--max-restarts``) inside the allocation;
- time limit or rebalancer: ``--signal=USR1@<s>`` reaches torchrun in the step, which forwards it
  (``--signals-to-handle``) to the workers; they save, rank 0 runs ``scontrol requeue`` and they
  exit 143. The batch shell itself only logs USR1 (the rebalancer's ``scancel --full`` reaches it).
"""

from __future__ import annotations

import shlex

from gpufleet.automation.jobs.spec import JobSpec
from gpufleet.lifecycle.layout import INSTALL_DIR

HEAD_ADDR = (
    'head_addr=$(scontrol show node "${nodes[0]}" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')'
)


def render_sbatch(spec: JobSpec) -> str:
    d = ["--job-name=" + spec.name, f"--nodes={spec.nodes}", "--ntasks-per-node=1"]
    if spec.partition:
        d.append(f"--partition={spec.partition}")
    if spec.gpus_per_node:
        d.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.time_limit:
        d.append(f"--time={spec.time_limit}")
    if spec.workdir:
        d.append(f"--chdir={spec.workdir}")
    d += ["--requeue", f"--signal=USR1@{spec.signal_before_s}", "--open-mode=append",
          "--output=%x-%j.out"]
    lines = ["#!/bin/bash", f"# Rendered by gpufleet from {spec.source}. Re-render: gpufleet launch --dry-run.",
             *(f"#SBATCH {x}" for x in d), "", "set -uo pipefail"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in spec.job_env().items()]
    lines += [f"# The node's bundle (gpufleet.lifecycle: the runtime, the reference job) lies under {INSTALL_DIR}.",
              f"export PYTHONPATH={shlex.quote(INSTALL_DIR)}${{PYTHONPATH:+:$PYTHONPATH}}"]
    torchrun = spec.torchrun_args("$SLURM_NNODES", f"$head_addr:{spec.rdzv_port}", "$SLURM_JOB_ID")
    fixed = {"$SLURM_NNODES": '"$SLURM_NNODES"', f"$head_addr:{spec.rdzv_port}": f'"$head_addr:{spec.rdzv_port}"',
             "$SLURM_JOB_ID": '"$SLURM_JOB_ID"'}
    line = " ".join(fixed.get(a) or shlex.quote(a) for a in torchrun)
    lines += [
        "",
        "# The rebalancer's `scancel --signal=USR1 --full` also reaches this shell: log it, do not die.",
        "trap 'echo \"gpufleet: USR1 received; workers checkpoint and requeue the job\"' USR1",
        'mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        "# The node's address as slurmd registered it (a node name need not resolve).",
        HEAD_ADDR,
        'echo "gpufleet: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST;'
        f' rendezvous $head_addr:{spec.rdzv_port}"',
        f"srun --kill-on-bad-exit=1 {line}",
        "rc=$?",
        'echo "gpufleet: torchrun exited $rc"',
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"

"""Fault to training again, in the integrated sandbox (tests/heal_sandbox.py): a GPU of the job's
node fails (device fixture) -> its health hook drains it -> `gpufleet heal` replaces the instance ->
the newcomer's slurmd registers held -> gate -> admitted -> the reference job resumes. With
``--spares N`` the same trials run again once the pool holds N hot spares: the healer admits the
held spare, the job resumes there, and the replacement is gated and held as the next spare.

Run: .venv/bin/python bench/heal.py [--trials 5] [--boot-delay 5] [--ckpt-every 5] [--spares N]
     [--state-dir DIR] (reuse a running `gpufleet sandbox up --state-dir DIR`; else one is started)

Per trial: seconds from the injected fault to the job's first training step after its resume,
and the training work lost (steps trained past the checkpoint it resumed from). Needs root and
Debian's slurm packages; starts and stops its own daemons and processes (by PID).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the repo first: tests/infra must not shadow infra
from slurm_harness import start_local_slurm  # noqa: E402

from gpufleet.automation.sandbox import control  # noqa: E402
from tests.heal_sandbox import IntegratedSandbox, install_hook  # noqa: E402

ANCHORS = (
    ("HyperPod: node replaced, job resumed", "\"within minutes\""),
    ("HyperPod: checkpointless recovery", "under 2 minutes"),
)


def sandbox_env(state_dir: Path | None, work: Path) -> tuple[dict[str, str], Path, int | None]:
    """(env, inventory, pid of a server this bench started)."""
    if state_dir is not None and control.status(state_dir).state == "running":
        info = control.status(state_dir)
        control.SandboxClient(info.endpoint).restore()
        return info.env, Path(info.inventory), None
    stacks = work / "stacks"
    shutil.copytree(REPO / "stacks", stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    info = control.up(stacks, state_dir or work / ".gpufleet", progress=lambda m: print(f"  sandbox: {m}", flush=True))
    return info.env, Path(info.inventory), info.pid


REPLACE_STEPS = (
    ("drained", "fault -> drained by its hook"),
    ("LOCKED", "-> the healer acts"),
    ("CHECKPOINTING", "-> drained, USR1, requeue"),
    ("DRAINED", "-> job off the node"),
    ("RELEASED", "-> instance terminated"),
    ("seen", "-> replacement InService"),
    ("up", "-> slurmd registered (boot)"),
    ("HEALTHY", "-> gate passed"),
    ("JOINED", "-> admitted"),
    ("running", "-> job RUNNING"),
    ("first_step", "-> first step (torchrun)"),
)
"""A replacement's critical path in order (Trial.marks keys), each step timed from the one before."""
SWAP_STEPS = (
    ("drained", "fault -> drained by its hook"),
    ("LOCKED", "-> the healer acts"),
    ("CHECKPOINTING", "-> spare admitted, requeue"),
    ("DRAINED", "-> job off the node"),
    ("running", "-> job RUNNING on the spare"),
    ("first_step", "-> first step (torchrun)"),
)
"""A swap's critical path (the replacement goes on beside it)."""


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-heal-"))
    env, inventory, started_pid = sandbox_env(args.state_dir, work)
    for name in [n for n in os.environ if n.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))]:
        del os.environ[name]
    os.environ.update(env, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    root = Path(tempfile.mkdtemp(prefix="gh", dir="/tmp"))
    hook = install_hook(work, root)
    modes = [0] + ([args.spares] if args.spares else [])
    trials: dict[int, list] = {m: [] for m in modes}
    loads: dict[int, tuple[float, ...]] = {}
    slurm = start_local_slurm(num_nodes=0, root=root, health_check_program=str(hook.bin_dir / "slurm_healthcheck.sh"),
                              health_check_interval_s=args.health_interval)
    try:
        with IntegratedSandbox(inventory=inventory, slurm=slurm, hook=hook, work=work,
                               boot_delay_s=args.boot_delay) as isb:
            isb.start()
            isb.launch_job(ckpt_every=args.ckpt_every, step_sleep=args.step_sleep)
            with isb.healer() as loop:
                for spares in modes:
                    if spares:
                        isb.set_spares(spares)
                    for i in range(args.trials):
                        if spares:  # the last swap's replacement is the spare again before the next fault
                            isb.wait_spares(spares, args.trial_timeout)
                        trial = isb.fault_and_recover(timeout_s=args.trial_timeout)
                        if spares and trial.first_step_after_s is not None:
                            # The swap's replacement boots beside the resumed job: its hold as the
                            # next spare ends the trial's timeline.
                            isb.wait_spares(spares, args.trial_timeout)
                            isb.refresh_timeline(trial)
                        trials[spares].append(trial)
                        print(f"{label(spares)}, trial {i + 1}: {fmt(trial.first_step_after_s)} s to training "
                              f"again, {trial.work_lost_steps} step(s) lost", flush=True)
                        if args.timeline:
                            for t, what in trial.timeline:
                                print(f"  {t:7.1f} s  {what}")
                        if trial.first_step_after_s is None:
                            break
                    loads[spares] = os.getloadavg()
                    if any(t.first_step_after_s is None for t in trials[spares]):
                        break
            for error in loop.errors:
                print(f"healer error: {error}")
    finally:
        slurm.stop()
        if started_pid is not None:
            control.stop_server(started_pid)
    report(args, trials, loads)
    shutil.rmtree(root, ignore_errors=True)
    every = [t for ts in trials.values() for t in ts]
    return 0 if every and all(t.first_step_after_s is not None for t in every) else 1


def label(spares: int) -> str:
    return f"with {spares} hot spare{'s' if spares > 1 else ''}" if spares else "without a spare"


def fmt(v: float | None) -> str:
    # A step first seen by polling (the drain) can trail the next one by a few ms: no "-0.0".
    return "-" if v is None else f"{round(v, 1) or 0.0:.1f}"


def row(what: str, values: list[float], target: str = "") -> str:
    if not values:
        return f"{what:30} {'-':>7} {'-':>7} {'-':>7}  {target}".rstrip()
    figures = (fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)))
    return f"{what:30} {figures[0]:>7} {figures[1]:>7} {figures[2]:>7}  {target}".rstrip()


def report(args: argparse.Namespace, trials: dict[int, list], loads: dict[int, tuple[float, ...]]) -> None:
    print()
    print(f"integrated sandbox, local Slurm: boot delay {args.boot_delay:g} s (parameter),")
    print(f"checkpoint every {args.ckpt_every} steps of {args.step_sleep:g} s + compute, health hook every "
          f"{args.health_interval} s,")
    print(f"healer pass every 1 s; {os.cpu_count()} CPUs")
    for spares, done_and_not in trials.items():
        done = [t for t in done_and_not if t.first_step_after_s is not None]
        load = " ".join(f"{x:.1f}" for x in loads.get(spares, os.getloadavg()))
        print()
        print(f"{label(spares)}: {len(done)}/{len(done_and_not)} trials, load {load}")
        print(f"{'seconds after the fault':30} {'median':>7} {'min':>7} {'max':>7}  target")
        if not done:
            continue
        target = 30 if spares else args.boot_delay + 30
        t = [x.first_step_after_s for x in done]
        lost = [x.work_lost_steps for x in done]
        print(row("drained by its hook", [x.drained_s for x in done if x.drained_s is not None]))
        if spares:
            print(row("spare admitted", [x.spare_admitted_s for x in done if x.spare_admitted_s is not None]))
        print(row("job RUNNING again", [x.running_again_s for x in done if x.running_again_s is not None]))
        print(row("training again", t, f"<= {target:g}: {'met' if max(t) <= target else 'NOT met'}"))
        print(row("replacement admitted" if not spares else "replacement held as spare",
                  [x.marks["JOINED"] for x in done if "JOINED" in x.marks]))
        print(row("work lost, steps", lost, f"<= {args.ckpt_every}: {'met' if max(lost) <= args.ckpt_every else 'NOT met'}"))
        print("critical path, each step from the one before:")
        steps = SWAP_STEPS if spares else REPLACE_STEPS
        for before, (key, what) in zip(("fault", *(k for k, _ in steps)), steps, strict=False):
            spans = [x.marks[key] - x.marks.get(before, 0.0) for x in done
                     if key in x.marks and (before == "fault" or before in x.marks)]
            print(row(f"  {what}", spans))
    print()
    print("first step: torchrun's agent and worker each import torch, then the")
    print("checkpoint loads; the requeued job starts cred_expire + 1 s (6 s here)")
    print("after it left its node")
    for what, figure in ANCHORS:
        print(f"anchor: {what}: {figure}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--boot-delay", type=float, default=5.0, help="seconds from InService to the node's slurmd")
    p.add_argument("--ckpt-every", type=int, default=5)
    p.add_argument("--step-sleep", type=float, default=0.2)
    p.add_argument("--health-interval", type=int, default=2, help="HealthCheckInterval, s")
    p.add_argument("--spares", type=int, default=0,
                   help="also run the trials with this many hot spares in the pool (after those without)")
    p.add_argument("--trial-timeout", type=float, default=300.0)
    p.add_argument("--state-dir", type=Path, help="a running sandbox's state dir, reused (restored first)")
    p.add_argument("--timeline", action="store_true", help="print each trial's timeline")
    args = p.parse_args(argv)
    if not 1 <= args.trials <= 50 or not 0 <= args.boot_delay <= 600 or args.ckpt_every < 1 or not 0 <= args.spares <= 4:
        p.error("--trials 1..50, --boot-delay 0..600, --ckpt-every >= 1, --spares 0..4")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

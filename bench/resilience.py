"""What failures cost the reference job: step time, checkpoint save time and stall (sync vs async),
time from a worker kill (torchrun) or a node crash (local Slurm) to the first step after resume,
and the work lost per failure in steps. Prints figures; asserts nothing.

    .venv/bin/python bench/resilience.py [--kills 3] [--no-slurm]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lifecycle.torchrun_job import TorchrunJob  # noqa: E402

MODEL = ["--dim", "256", "--layers", "4", "--seq-len", "64", "--batch-size", "8"]


def run_steady(root: Path, mode: str, steps: int) -> dict[str, float]:
    extra = ["--async-ckpt"] if mode == "async" else []
    job = TorchrunJob(root / mode, job_args=["--steps", str(steps), "--ckpt-dir", str(root / mode / "ckpt"),
                                             "--ckpt-every", "5", *MODEL, *extra])
    assert job.wait(600) == 0, job.tail()
    ev = job.events()
    ckpt_steps = {e["step"] for e in ev if e["event_type"] == "checkpoint"}
    # The step after a checkpoint pays for a background write competing for the same 2 cores.
    plain = [e["step_s"] for e in ev if e["event_type"] == "step" and e["step"] > 2
             and e["step"] not in ckpt_steps and e["step"] - 1 not in ckpt_steps]
    with_ckpt = [e["step_s"] for e in ev if e["event_type"] == "step" and e["step"] in ckpt_steps]
    saves = [e for e in ev if e["event_type"] == "checkpoint"]
    tok = [e["tokens_per_s"] for e in ev if e["event_type"] == "step" and e["step"] > 2
           and e["step"] not in ckpt_steps]
    size = sum(f.stat().st_size for f in (root / mode / "ckpt").rglob("*") if f.is_file()) / max(1, len(list((root / mode / "ckpt").iterdir())))
    return {"step_s": statistics.median(plain), "ckpt_step_s": statistics.median(with_ckpt),
            "save_s": statistics.median(e["save_s"] for e in saves),
            "stall_s": statistics.median(e["stall_s"] for e in saves),
            "tokens_per_s": statistics.median(tok), "ckpt_mib": size / 2**20}


def first_step_after(events: list[dict], restart: int) -> dict:
    seen_start = False
    for e in events:
        if e["event_type"] == "start" and e["restart"] == restart:
            seen_start = True
        elif seen_start and e["event_type"] == "step":
            return e
    raise RuntimeError(f"no step after restart {restart}")


def run_kills(root: Path, kills: int, steps: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(4, steps - 4), kills))
    job = TorchrunJob(root / "kills", max_restarts=kills + 1,
                      job_args=["--steps", str(steps), "--ckpt-dir", str(root / "kills" / "ckpt"),
                                "--ckpt-every", "5", "--step-sleep", "0.05", *MODEL])
    killed = []
    for restart, target in enumerate(targets):
        prog = job.wait_for(step=target, restart=restart, timeout=300)
        victim = prog[rng.randrange(len(prog))]
        os.kill(victim.pid, signal.SIGKILL)
        killed.append((time.time(), victim.step))
    assert job.wait(600) == 0, job.tail()
    ev = job.events()
    starts = [e for e in ev if e["event_type"] == "start"]
    out = []
    for i, (t_kill, at_step) in enumerate(killed, start=1):
        first = first_step_after(ev, i)
        resumed = starts[i]["resumed_from"] or 0
        out.append({"kill_to_step_s": first["ts"] - t_kill, "lost_steps": at_step - resumed})
    return out


def run_slurm(root: Path, steps: int) -> dict[str, float] | None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from slurm_harness import start_local_slurm
    except Exception as error:  # no Slurm here
        print(f"slurm path skipped: {error}")
        return None
    import yaml

    from gpufleet.automation.jobs.launch import launch
    from gpufleet.automation.slurm_client import SlurmClient
    from tests.lifecycle.torchrun_job import TORCHRUN, free_port

    slurm = start_local_slurm()
    try:
        ckpt, progress = root / "slurm" / "ckpt", root / "slurm" / "progress"
        (root / "slurm").mkdir(parents=True)
        job_file = root / "slurm" / "job.yaml"
        job_file.write_text(yaml.safe_dump({
            "name": "bench", "backend": "slurm", "partition": slurm.spec.partitions[0].name, "nodes": 1,
            "gpus_per_node": 0, "procs_per_node": 2, "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference",
            "args": ["--steps", str(steps), "--step-sleep", "0.05", "--progress-dir", str(progress), *MODEL],
            "checkpoint_dir": str(ckpt), "checkpoint_interval": 5, "rdzv_port": free_port(),
            "torchrun": str(TORCHRUN), "workdir": str(root / "slurm"),
            "env": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}}))
        job_id = int(launch(job_file, dry_run=False, slurm=SlurmClient(env=slurm.env)).job_id)
        first = slurm.wait_until(lambda: (j := slurm.job(job_id)).state == "RUNNING" and j, timeout=60)
        slurm.wait_until(lambda: (ckpt / "step_00000010").is_dir() and (progress / "rank0").exists()
                         and int((progress / "rank0").read_text().split()[1]) >= 12, timeout=300, interval=0.02)
        at_step = int((progress / "rank0").read_text().split()[1])
        t_crash = time.time()
        slurm.crash_node(first.nodes)
        slurm.wait_until(lambda: slurm.job(job_id).state == "COMPLETED", timeout=300, interval=0.5)
        import json

        log = root / "slurm" / f"bench-{job_id}.out"
        ev = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        starts = [e for e in ev if e["event_type"] == "start"]
        after = [e for e in ev if e["event_type"] == "step" and e["ts"] > starts[-1]["ts"]]
        return {"crash_to_step_s": after[0]["ts"] - t_crash, "lost_steps": at_step - (starts[-1]["resumed_from"] or 0),
                "requeue_to_start_s": starts[-1]["ts"] - t_crash}
    finally:
        slurm.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-slurm", action="store_true")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gpufleet-bench-"))
    print(f"reference job: 2 ranks (gloo, CPU), DDP, checkpoint every 5 steps,\n{' '.join(MODEL)}")
    results = {m: run_steady(root, m, args.steps) for m in ("sync", "async")}
    base = results["sync"]["step_s"]
    print(f"{'mode':6} {'step ms':>8} {'tok/s':>8} {'ckpt MiB':>9} {'save ms':>8} {'stall ms':>9} {'stall/step':>10}")
    for mode, r in results.items():
        print(f"{mode:6} {r['step_s'] * 1e3:8.1f} {r['tokens_per_s']:8.0f} {r['ckpt_mib']:9.1f} {r['save_s'] * 1e3:8.1f} "
              f"{r['stall_s'] * 1e3:9.1f} {r['stall_s'] / base:10.2f}")
    print(f"async stall / sync stall: {results['async']['stall_s'] / results['sync']['stall_s']:.2f}")
    kills = run_kills(root, args.kills, args.steps, args.seed)
    for i, k in enumerate(kills, 1):
        print(f"torchrun kill {i}: kill -> first step after resume {k['kill_to_step_s']:.2f} s, lost {k['lost_steps']} steps")
    print(f"torchrun: median kill -> step {statistics.median(k['kill_to_step_s'] for k in kills):.2f} s, "
          f"mean lost {statistics.mean(k['lost_steps'] for k in kills):.1f} steps\n(interval 5: expect <= 5)")
    if not args.no_slurm:
        s = run_slurm(root, args.steps)
        if s:
            print(f"slurm node crash: -> job restarted {s['requeue_to_start_s']:.2f} s,\n-> first step "
                  f"{s['crash_to_step_s']:.2f} s, lost {s['lost_steps']} steps")


if __name__ == "__main__":
    main()

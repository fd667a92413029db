"""How long a finished reference job takes to leave: from its "finished" event to torchrun's exit,
over many runs in parallel under CPU load, and how many never leave (a hang: still running
``--hang-after`` seconds after "finished"; each thread's wchan is printed, then the job is killed).
Prints figures; asserts nothing.

    .venv/bin/python bench/teardown.py [--trials 30] [--parallel 3] [--burners 2]

Each trial is the second job of test_resume_torchrun.py::test_corrupt_latest_is_skipped_on_resume:
2 ranks, DDP, resume from step 30 of 40, dump the final parameters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lifecycle.torchrun_job import TorchrunJob  # noqa: E402

STEPS = 40


def job_args(ckpt: Path, *extra: str) -> list[str]:
    return ["--steps", str(STEPS), "--ckpt-dir", str(ckpt), "--ckpt-every", "5", "--parallel", "ddp",
            "--seed", "7", *extra]


def threads_of(pid: int) -> list[str]:
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            out.append(f"{(task / 'comm').read_text().strip()}:{(task / 'wchan').read_text().strip()}")
        except OSError:
            continue
    return out


def trial(root: Path, i: int, hang_after: float) -> dict:
    work = root / f"t{i}"
    shutil.copytree(root / "seed", work / "ckpt")
    job = TorchrunJob(work, job_args=job_args(work / "ckpt", "--dump-final", str(work / "final.pt")))
    finished = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and job.proc.poll() is None:
            if finished is None and any(e["event_type"] == "finished" for e in job.events()):
                finished = time.monotonic()
            if finished is not None and time.monotonic() - finished > hang_after:
                workers = {p.pid: threads_of(p.pid) for p in job.progress().values()}
                return {"trial": i, "hang": True, "threads": workers}
            time.sleep(0.1)
        left = None if finished is None else round(time.monotonic() - finished, 2)
        return {"trial": i, "hang": False, "rc": job.proc.returncode, "finished_to_exit_s": left}
    finally:
        job.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=3, help="jobs at once")
    ap.add_argument("--burners", type=int, default=2, help="busy-loop processes beside them")
    ap.add_argument("--hang-after", type=float, default=45.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-teardown-"))
    first = TorchrunJob(root / "first", job_args=job_args(root / "seed", "--keep-last", "0"))
    assert first.wait(600) == 0, first.tail()
    shard = next((root / "seed" / f"step_{STEPS:08d}").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])  # the newest torn
    (root / "seed" / f"step_{STEPS - 5:08d}" / ".metadata").write_bytes(b"garbage")  # and one garbled
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            results = list(pool.map(lambda i: trial(root, i, args.hang_after), range(args.trials)))
    finally:
        for proc in burners:  # only the processes started here
            proc.kill()
            proc.wait(10)
    for r in results:
        print(json.dumps(r))
    left = sorted(r["finished_to_exit_s"] for r in results if not r["hang"] and r["finished_to_exit_s"] is not None)
    failed = sum(1 for r in results if not r["hang"] and r["rc"] != 0)
    hangs = sum(1 for r in results if r["hang"])
    print(f"trials {len(results)}, hangs {hangs}, non-zero exits {failed}")
    if left:
        print(f'"finished" to torchrun exit: median {statistics.median(left):.1f} s, '
              f"min {left[0]:.1f} s, max {left[-1]:.1f} s")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A rank whose step loop is over leaves in bounded time: a peer that never reaches the final barrier
does not keep it, and a stop signal ends it instead of setting a flag no one reads.

Two real ranks on a gloo group over loopback; rank 1 stays away, as a peer stuck or slow under load
does (the xdist hang of test_resume_torchrun.py::test_corrupt_latest_is_skipped_on_resume). Each
rank ends its run the way gpt_reference.main does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lifecycle.torchrun_job import REPO, free_port

pytest.importorskip("torch")

pytestmark = [pytest.mark.torch, pytest.mark.timeout(300)]

RANK = """
import sys, time
from gpufleet.lifecycle.runtime.distributed import init_distributed, shutdown_distributed
from gpufleet.lifecycle.runtime.signals import StopRequest, exit_on_signals, exit_stopped

info = init_distributed()
StopRequest().install()
if info.rank == 1:
    print("staying away", flush=True)
    time.sleep(600)
exit_on_signals()
print("leaving", flush=True)
print(f"torn down: {shutdown_distributed(float(sys.argv[1]))}", flush=True)
exit_stopped(0)
"""


class Ranks:
    """Rank 0 and rank 1 of a world of two, each logging to its own file."""

    def __init__(self, tmp_path: Path, teardown_timeout_s: float) -> None:
        port = str(free_port())
        self.logs = [tmp_path / f"rank{r}.log" for r in range(2)]
        self.procs = []
        for rank, log in enumerate(self.logs):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "PYTHONPATH": str(REPO),
                   "OMP_NUM_THREADS": "1"}
            with log.open("w") as out:
                self.procs.append(subprocess.Popen([sys.executable, "-c", RANK, str(teardown_timeout_s)],
                                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))

    def text(self, rank: int) -> str:
        return self.logs[rank].read_text(errors="replace")

    def wait_line(self, rank: int, line: str, timeout: float) -> float:
        """Block until ``rank`` printed ``line``; returns the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.text(rank).splitlines():
                return time.monotonic()
            assert self.procs[rank].poll() is None, f"rank {rank} exited early:\n{self.text(rank)}"
            time.sleep(0.02)
        raise AssertionError(f"rank {rank} did not print {line!r} within {timeout}s:\n{self.text(rank)}")

    def exit_of_rank0(self, timeout: float) -> int:
        try:
            return self.procs[0].wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"rank 0 still running after {timeout}s:\n{self.text(0)}") from None

    def kill(self) -> None:
        for proc in self.procs:  # only the two processes this test started
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_finished_rank_whose_peer_never_arrives_leaves_after_its_teardown_timeout(tmp_path):
    ranks = Ranks(tmp_path, teardown_timeout_s=3)
    try:
        ranks.wait_line(1, "staying away", timeout=120)
        leaving = ranks.wait_line(0, "leaving", timeout=120)
        code = ranks.exit_of_rank0(timeout=60)  # without a bound: the group's 300 s timeout, or never
        took = time.monotonic() - leaving
    finally:
        ranks.kill()
    assert code == 0, ranks.text(0)
    assert "torn down: False" in ranks.text(0).splitlines(), ranks.text(0)
    assert took < 3 + 30, f"left {took:.1f}s after the teardown began (timeout 3 s)"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_after_the_loop_ends_the_rank_waiting_at_the_barrier(tmp_path, sig):
    ranks = Ranks(tmp_path, teardown_timeout_s=600)
    try:
        ranks.wait_line(1, "staying away", timeout=120)
        ranks.wait_line(0, "leaving", timeout=120)
        time.sleep(0.5)  # into the barrier
        sent = time.monotonic()
        ranks.procs[0].send_signal(sig)  # torchrun's agent shutting its workers down, or scancel
        code = ranks.exit_of_rank0(timeout=60)
        took = time.monotonic() - sent
    finally:
        ranks.kill()
    assert code == 128 + sig, ranks.text(0)
    assert "torn down" not in ranks.text(0), ranks.text(0)
    assert took < 30, f"rank 0 took {took:.1f}s to leave after {sig.name}"

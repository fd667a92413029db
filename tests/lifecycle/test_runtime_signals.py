"""A stop signal only sets a flag; the step loop sees it at the next agreement point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from gpufleet.lifecycle.runtime.signals import REQUEUE_EXIT_CODE, StopRequest  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_sets_flag_and_is_agreed(sig):
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        stop = StopRequest()
        stop.install()
        assert not stop.agreed(torch.device("cpu"))
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.signum == sig
        assert stop.agreed(torch.device("cpu"))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@pytest.mark.parametrize(("first", "then", "kept"), [
    (signal.SIGUSR1, signal.SIGTERM, signal.SIGUSR1),  # torchrun's agent after a second USR1
    (signal.SIGTERM, signal.SIGUSR1, signal.SIGTERM),  # a cancel stays a cancel
    (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM),
])
def test_the_first_stop_signal_decides(first, then, kept):
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        stop = StopRequest()
        stop.install()
        os.kill(os.getpid(), first)
        os.kill(os.getpid(), then)
        assert stop.signum == kept
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_requeue_code_is_what_shells_report_for_sigterm():
    assert REQUEUE_EXIT_CODE == 128 + signal.SIGTERM


def test_a_stopped_worker_leaves_with_its_output_flushed_and_without_finalization():
    """exit_stopped: the code, what was written (unflushed) reaches the pipe, and nothing the
    interpreter would run at exit (atexit here; torch's teardown in a worker) runs."""
    script = (
        "import atexit, logging, sys\n"
        "from gpufleet.lifecycle.runtime.signals import exit_stopped\n"
        "atexit.register(lambda: print('finalized', flush=True))\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "logging.getLogger('w').warning('saved at step 15')\n"
        "sys.stdout.write('{\"event_type\": \"stopping\"}')\n"
        "exit_stopped()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": ""})
    assert done.returncode == REQUEUE_EXIT_CODE, done.stderr
    assert done.stdout == '{"event_type": "stopping"}'
    assert "saved at step 15" in done.stderr and "finalized" not in done.stdout + done.stderr

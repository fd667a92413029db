"""A stop signal only sets a flag; the step loop sees it at the next agreement point."""

from __future__ import annotations

import os
import signal

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


def test_requeue_code_is_what_shells_report_for_sigterm():
    assert REQUEUE_EXIT_CODE == 128 + signal.SIGTERM

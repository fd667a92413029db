"""A real Prometheus on 127.0.0.1, started and stopped by PID: on a config of the test's, or over a
TSDB backfilled from OpenMetrics text (promtool)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def backfilled_prometheus(root: Path, openmetrics: str, *, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the base URL of a Prometheus serving ``openmetrics`` (nothing scraped)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "series.om").write_text(openmetrics)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(root / "series.om"),
                    str(root / "data")], check=True, capture_output=True, timeout=120)
    (root / "prometheus.yml").write_text("global: {scrape_interval: 30s}\nscrape_configs: []\n")
    with running_prometheus(root, "--storage.tsdb.retention.time=100y", ready_timeout_s=ready_timeout_s) as url:
        yield url


@contextlib.contextmanager
def running_prometheus(root: Path, *args: str, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the base URL of a Prometheus on ``root / "prometheus.yml"`` (its TSDB in ``root /
    "data"``, its log in ``root / "prometheus.log"``, ``args`` besides) once it answers ready; it is
    stopped by its PID after."""
    port = free_port()
    with open(root / "prometheus.log", "w") as log:
        proc = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={root / 'data'}", *args,
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not become ready: {(root / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)

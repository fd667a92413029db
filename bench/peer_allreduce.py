"""The gate's peer all-reduce on this machine: a new node and a known-good peer, both on this host.

    .venv/bin/python bench/peer_allreduce.py [--repeats 3]

Runs ``gate(["i-0new"], LocalProbe(peers=...), ("deep",))`` (the entry point twice, node ranks 0
and 1, gloo on a CPU host, NCCL on GPUs) and prints each run's results and wall time, then once
with no known-good peer (the check is SKIP with its reason).
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time

from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.peer import PeerCandidate
from gpufleet.automation.health.probe import LocalProbe

WIDTH = 80
"""The terminal the report folds to (at spaces, identifiers whole)."""


def node(name: str, *, admitted: bool = True, healthy: bool = True) -> PeerCandidate:
    return PeerCandidate(name=name, pool="h100-use1-az4", group="train-h100", admitted=admitted, healthy=healthy)


def show(peers: list[PeerCandidate]) -> None:
    begin = time.monotonic()
    report = gate(["i-0new"], LocalProbe(timeout_s=300, peers=peers), ("deep",))
    print(textwrap.fill(f"ok: {report.ok} in {time.monotonic() - begin:.1f} s | summary: {report.summary}",
                        WIDTH, subsequent_indent="  ", break_on_hyphens=False))
    for r in report.nodes[0].report.results:
        print(textwrap.fill(f"  {r.check:15} {r.status.value:5} {r.detail}", WIDTH, subsequent_indent=" " * 24,
                            break_on_hyphens=False, break_long_words=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    fleet = [node("i-0new", admitted=False), node("i-0drain", healthy=False), node("i-0good")]
    for _ in range(args.repeats):
        show(fleet)
    show(fleet[:2])


if __name__ == "__main__":
    main()

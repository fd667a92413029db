"""The Slurm head collector's scrape targets, from slurmctld's own node list.

Run on the head by the ``gpufleet-scrape-targets`` timer (70-join.sh): ``scontrol show nodes
--json`` lists every registered node with the address its slurmd registered from and its
features (the first one is its node group: ``slurmd -Z --conf "Feature=<group> ..."``). Each
exporter job gets one file-based discovery file (``<dir>/<job>.json``) with a target per node,
labelled ``node`` and ``node_group``; the collector's config adds ``pool`` from the group.

Slurm is the membership record: a node that scales in deletes itself from the controller (and
drops out of the files), a node that dies stays registered (DOWN) and its targets report ``up == 0``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpufleet.lifecycle import layout

SCONTROL_TIMEOUT_S = 30


def _features(node: Mapping[str, Any]) -> list[str]:
    """``features`` is a comma-separated string before 23.11 and a list from 23.11 on."""
    raw = node.get("features") or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [f.strip() for f in raw if isinstance(f, str) and f.strip()]


def _address(node: Mapping[str, Any]) -> str | None:
    """The registered address; a FUTURE record (held, slurmd not started yet) has none worth scraping."""
    address = node.get("address")
    try:
        return str(ipaddress.ip_address(address)) if isinstance(address, str) else None
    except ValueError:
        return None


def file_sd(nodes_json: Mapping[str, Any], ports: Mapping[str, int] = layout.EXPORTER_PORTS,
            *, gpu_jobs: Sequence[str] = ("dcgm",)) -> dict[str, list[dict[str, Any]]]:
    """Job -> file-based discovery entries (one per node, sorted by node name). Nodes without a
    GPU GRES get no target in ``gpu_jobs``."""
    nodes = nodes_json.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError("scontrol show nodes --json: no 'nodes' list in the output")
    out: dict[str, list[dict[str, Any]]] = {job: [] for job in ports}
    for node in sorted((n for n in nodes if isinstance(n, dict)), key=lambda n: str(n.get("name"))):
        address, features = _address(node), _features(node)
        if address is None or not features or not node.get("name"):
            continue
        has_gpu = "gpu" in str(node.get("gres") or "")
        host = f"[{address}]" if ":" in address else address
        for job, port in ports.items():
            if job in gpu_jobs and not has_gpu:
                continue
            out[job].append({"targets": [f"{host}:{port}"],
                             "labels": {"node": str(node["name"]), "node_group": features[0]}})
    return out


def write_files(targets: Mapping[str, list[dict[str, Any]]], directory: Path) -> list[Path]:
    """Write each job's file atomically (Prometheus re-reads a file when it changes)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for job, entries in sorted(targets.items()):
        path = directory / f"{job}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0]) if args else Path(layout.COLLECTOR_DIR) / "targets"
    try:
        result = subprocess.run(["scontrol", "show", "nodes", "--json"], capture_output=True, text=True,
                                timeout=SCONTROL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"scrape_targets: scontrol failed: {err}", file=sys.stderr)
        return 1
    if result.returncode != 0:
        # Keep the last files: a controller restart must not empty the collector's targets.
        print(f"scrape_targets: scontrol exit {result.returncode}: {result.stderr.strip()}", file=sys.stderr)
        return 1
    try:
        targets = file_sd(json.loads(result.stdout))
    except (ValueError, json.JSONDecodeError) as err:
        print(f"scrape_targets: {err}", file=sys.stderr)
        return 1
    for path in write_files(targets, directory):
        print(f"scrape_targets: {path}: {len(targets[path.stem])} targets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

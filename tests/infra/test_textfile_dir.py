"""One textfile directory on every node kind: what the bootstrap's node_exporter reads, what the
health gate and the Slurm health check write, and what the EKS chart's node_exporter mounts (rendered inference stack)."""

from __future__ import annotations

import re
from pathlib import Path

from gpufleet.lifecycle import layout

LIFECYCLE = Path(layout.__file__).resolve().parent


def test_bootstrap_exporter_and_health_writers_use_the_one_directory():
    exporters = (LIFECYCLE / "bootstrap" / "steps" / "40-exporters.sh").read_text()
    [read] = re.findall(r"^textfile_dir=(\S+)$", exporters, re.M)
    assert "--collector.textfile.directory=$textfile_dir" in exporters
    gate = (LIFECYCLE / "bootstrap" / "steps" / "60-health-gate.sh").read_text()
    [written] = re.findall(r"^textfile=(\S+)/[^/]+\.prom$", gate, re.M)
    assert read == written == layout.TEXTFILE_DIR


def test_eks_node_exporter_reads_the_directory_the_bootstrap_writes(rendered_fleet):
    releases = rendered_fleet["inference"].of_type("kubernetes:helm.sh/v3:Release")
    [values] = [r.inputs["values"] for r in releases if "prometheus-node-exporter" in (r.inputs.get("values") or {})]
    exporter = values["prometheus-node-exporter"]
    assert f"--collector.textfile.directory={layout.TEXTFILE_DIR}" in exporter["extraArgs"]
    [mount] = exporter["extraHostVolumeMounts"]
    assert mount["hostPath"] == mount["mountPath"] == layout.TEXTFILE_DIR

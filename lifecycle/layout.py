"""Where the node bundle lives on a node, and how its Python is started.

The user data copies the bundle into ``<install dir>/gpufleet/lifecycle/``, so that with
``PYTHONPATH=<install dir>`` the node's interpreter imports it as ``gpufleet.lifecycle``
(``gpufleet`` is a namespace package there too: no ``gpufleet/__init__.py``). Every script that
starts ``python -m gpufleet.lifecycle...`` sets that PYTHONPATH; slurm.conf names the hooks by
their paths under this layout.
"""

from __future__ import annotations

INSTALL_DIR = "/opt/gpufleet"
"""Default install directory on a node (the node image's venv sits beside the bundle, in ``venv/``)."""
PACKAGE_PATH = "gpufleet/lifecycle"
"""The bundle's place below the install directory: the import path ``gpufleet.lifecycle``."""
NODE_PYTHON = f"{INSTALL_DIR}/venv/bin/python3"
"""The node image's interpreter, holding the packages of ``node-requirements.txt``."""
TEXTFILE_DIR = "/var/lib/node_exporter/textfile"
"""The one directory of ``*.prom`` files (health results, training metrics) on every node kind:
the bootstrap's node_exporter (40-exporters.sh) and the EKS chart's read it, 60-health-gate.sh
and the Slurm health check write it."""
COLLECTOR_DIR = "/etc/gpufleet/collector"
"""The Slurm head's collector (Prometheus in agent mode): ``prometheus.yml``, the AWS config of
its credential chain, and ``targets/*.json``, the file-based discovery that
``gpufleet.lifecycle.slurm.scrape_targets`` rewrites from slurmctld's node list."""
EXPORTER_PORTS = {"node": 9100, "dcgm": 9400}
"""Scrape job -> port of the exporters 40-exporters.sh starts on every Slurm node."""


def lifecycle_dir(install_dir: str = INSTALL_DIR) -> str:
    """Where the bundle's files land: ``<install_dir>/gpufleet/lifecycle``."""
    return f"{install_dir.rstrip('/')}/{PACKAGE_PATH}"

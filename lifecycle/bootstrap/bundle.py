"""The lifecycle bundle the stack uploads to S3 and nodes download at boot.

Pure: reads files from this package, no pulumi import. The bundle is the node package
(``lifecycle/``: its scripts, its modules, the data files it reads such as the instance catalog,
and the list of third-party packages it needs) and, for Slurm, the rendered configuration. It is
self-contained: lifecycle imports only lifecycle, so with the node's packages installed it runs
from an empty directory (laid out as ``gpufleet.lifecycle.layout`` says). Its version is a digest
of every file, data included, so a script or catalog change lands under a new S3 prefix and a new
launch template version, while nodes already running keep the bundle they booted with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from gpufleet.lifecycle.slurm.conf import (
    SlurmClusterSpec,
    render_cgroup_conf,
    render_node_gres_conf,
    render_slurm_conf,
)
from gpufleet.lifecycle.slurm.dbd import render_slurmdbd_conf

LIFECYCLE_DIR = Path(__file__).resolve().parent.parent
SUFFIXES = (".sh", ".py", ".csv")
"""Scripts, modules and data files (``data/*.csv``)."""
NODE_REQUIREMENTS = "node-requirements.txt"
"""The third-party packages the bundle imports (torch, numpy); the node image installs them."""


def package_files(root: Path = LIFECYCLE_DIR) -> dict[str, str]:
    """Bundle path -> text of every script, module and data file under ``lifecycle/``."""
    files = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        if path.suffix in SUFFIXES or path.relative_to(root).as_posix() == NODE_REQUIREMENTS:
            files[path.relative_to(root).as_posix()] = path.read_text()
    return files


def bundle_files(slurm: SlurmClusterSpec | None = None, *, source: str = "") -> dict[str, str]:
    """What the stack uploads: the node package and, for a Slurm cluster, its rendered configuration."""
    return {**package_files(), **(slurm_files(slurm, source=source) if slurm is not None else {})}


def bundle_version(files: Mapping[str, str]) -> str:
    """12 hex digits of a digest over the paths and contents."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return digest.hexdigest()[:12]


def slurm_files(spec: SlurmClusterSpec, *, source: str = "") -> dict[str, str]:
    """Rendered Slurm configuration: slurm.conf, slurmdbd.conf (the head's), cgroup.conf and a
    gres.conf per node group."""
    files = {"slurm/slurm.conf": render_slurm_conf(spec, source=source)}
    if spec.site.accounting:
        files["slurm/slurmdbd.conf"] = render_slurmdbd_conf(spec)
    cgroup = render_cgroup_conf(spec)
    if cgroup is not None:
        files["slurm/cgroup.conf"] = cgroup
    for partition in spec.partitions:
        files[f"slurm/gres/{partition.name}.conf"] = render_node_gres_conf(partition)
    return files

"""The lifecycle bundle the stack uploads to S3 and nodes download at boot.

Pure: reads files from this package, no pulumi import. The bundle holds the node-side scripts and
Python (``lifecycle/``, tests excluded) and, for Slurm, the rendered configuration. Its version is a
digest of the scripts, so a script change lands under a new S3 prefix and a new launch template
version, while nodes already running keep the bundle they booted with.
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

LIFECYCLE_DIR = Path(__file__).resolve().parent.parent
SUFFIXES = (".sh", ".py")


def script_files(root: Path = LIFECYCLE_DIR) -> dict[str, str]:
    """Bundle path -> text of every script and module under ``lifecycle/``."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
            files[path.relative_to(root).as_posix()] = path.read_text()
    return files


def bundle_version(files: Mapping[str, str]) -> str:
    """12 hex digits of a digest over the paths and contents."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return digest.hexdigest()[:12]


def slurm_files(spec: SlurmClusterSpec, *, source: str = "") -> dict[str, str]:
    """Rendered Slurm configuration: slurm.conf, cgroup.conf and a gres.conf per node group."""
    files = {"slurm/slurm.conf": render_slurm_conf(spec, source=source)}
    cgroup = render_cgroup_conf(spec)
    if cgroup is not None:
        files["slurm/cgroup.conf"] = cgroup
    for partition in spec.partitions:
        files[f"slurm/gres/{partition.name}.conf"] = render_node_gres_conf(partition)
    return files

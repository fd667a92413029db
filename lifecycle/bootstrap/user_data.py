"""User data for gpufleet nodes, and the parameters file on_create reads.

Pure: no pulumi import, no I/O. The user data is small and stable: it downloads the lifecycle
bundle of one version from S3 (``s3://<bucket>/<prefix>/<version>/``) into
``<install dir>/gpufleet/lifecycle/`` (``gpufleet.lifecycle.layout``), installs the node's parameters
file from it and runs ``bootstrap/on_create.sh``. Scripts and parameters live in S3,
so changing how nodes are configured needs neither a new AMI nor, for parameters, a new launch
template version.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields

from gpufleet.lifecycle.layout import INSTALL_DIR, lifecycle_dir

S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^\s']*/)?$")
ENV_NAME = re.compile(r"^GPUFLEET_[A-Z0-9_]+$")


class NodeRole(enum.StrEnum):
    """What a node does; on_create's steps act on it."""

    SLURM_HEAD = "slurm-head"
    SLURM_COMPUTE = "slurm-compute"
    SLURM_LOGIN = "slurm-login"
    EKS_NODE = "eks-node"


@dataclass(frozen=True, kw_only=True)
class NodeParams:
    """Everything on_create needs to know about a node, written to its node.env."""

    role: NodeRole
    """What the node does."""
    region: str
    """AWS region (Secrets Manager, S3)."""
    bundle_version: str
    """Version of the lifecycle bundle the node runs (logged at bootstrap)."""
    node_group: str = ""
    """Node group, which is also the Slurm partition feature."""
    instance_type: str = ""
    """EC2 instance type, for the health checks' expectations."""
    num_gpus: int = 0
    """GPUs on the node; 0 skips the GPU exporter and the health gate."""
    efa_interfaces: int = 0
    """EFA interfaces fi_info must list; 0 skips the check."""
    fsx_dns_name: str = ""
    """FSx for Lustre DNS name; '' mounts nothing."""
    fsx_mount_name: str = ""
    """FSx for Lustre mount name."""
    fsx_mount_path: str = ""
    """Where the file system is mounted."""
    slurm_node_conf: str = ""
    """``slurmd -Z --conf`` string of a compute node (feature and GRES)."""
    munge_secret_id: str = ""
    """Secrets Manager secret holding the munge key (base64)."""
    health_tiers: str = "quick"
    """Health check tiers the node passes before it joins."""

    def to_env(self) -> dict[str, str]:
        """``GPUFLEET_<FIELD>`` -> value, for node.env."""
        return {f"GPUFLEET_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}


def render_node_env(values: Mapping[str, object]) -> str:
    """A node.env file: one ``NAME='value'`` per line, sorted, safe to source from bash."""
    lines = ["# gpufleet node parameters, read by lifecycle/bootstrap/on_create.sh"]
    for name in sorted(values):
        if not ENV_NAME.match(name):
            raise ValueError(f"node.env: {name!r} is not a GPUFLEET_* name")
        value = str(values[name])
        if "\n" in value:
            raise ValueError(f"node.env: {name} has a newline in its value")
        lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class UserDataParams:
    """What the user data must know to fetch and start the bootstrap."""

    bundle_uri: str
    """``s3://bucket/prefix/<version>/``: the lifecycle bundle (ends with a slash)."""
    node_env_path: str
    """The node's parameters file inside the bundle, e.g. ``nodes/train-h100.env``."""
    region: str
    """Region of the bucket."""
    install_dir: str = INSTALL_DIR
    """The bundle lands in ``<install_dir>/gpufleet/lifecycle``; scripts run it with PYTHONPATH=<install_dir>."""
    fetch_attempts: int = 10
    """Tries to download the bundle (S3 endpoints and IAM can lag a fresh instance)."""

    def __post_init__(self) -> None:
        if not S3_URI.match(self.bundle_uri):
            raise ValueError(f"UserDataParams.bundle_uri={self.bundle_uri!r}: expected s3://bucket/prefix/ ending in /")
        if self.node_env_path.startswith("/") or ".." in self.node_env_path.split("/"):
            raise ValueError(f"UserDataParams.node_env_path={self.node_env_path!r}: must be relative inside the bundle")
        if not self.install_dir.startswith("/") or ".." in self.install_dir.split("/"):
            raise ValueError(f"UserDataParams.install_dir={self.install_dir!r}: must be an absolute path")
        if self.fetch_attempts < 1:
            raise ValueError(f"UserDataParams.fetch_attempts={self.fetch_attempts}: must be at least 1")


def render_user_data(params: UserDataParams) -> str:
    """The node's user data: a bash script run once by cloud-init at first boot."""
    q = shlex.quote
    lifecycle = lifecycle_dir(params.install_dir)
    return f"""#!/bin/bash
# gpufleet node user data, rendered by lifecycle/bootstrap/user_data.py.
# Fetches the lifecycle bundle from S3 and runs its bootstrap; see lifecycle/bootstrap/on_create.sh.
set -euo pipefail
exec > >(tee -a /var/log/gpufleet-user-data.log) 2>&1

bundle={q(params.bundle_uri)}
# The bundle is the Python package gpufleet.lifecycle: its scripts run it with PYTHONPATH={params.install_dir}.
lifecycle={q(lifecycle)}
install -d -m 0755 "$lifecycle" /etc/gpufleet

attempt=1
until aws s3 cp --recursive --only-show-errors --region {q(params.region)} "$bundle" "$lifecycle/"; do
    if [ "$attempt" -ge {params.fetch_attempts} ]; then
        echo "gpufleet: could not download $bundle after $attempt attempts" >&2
        exit 1
    fi
    sleep $((attempt * 5))
    attempt=$((attempt + 1))
done

install -m 0644 "$lifecycle/"{q(params.node_env_path)} /etc/gpufleet/node.env
exec bash "$lifecycle/bootstrap/on_create.sh" /etc/gpufleet/node.env
"""

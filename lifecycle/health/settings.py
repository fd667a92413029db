"""What the checks on one node expect, from the instance type (the bundle's catalog:
``gpufleet.lifecycle.instance_types``) and the node's config.

On a node the bootstrap writes the environment (``GPUFLEET_INSTANCE_TYPE``, ``GPUFLEET_FSX_MOUNT``);
without it the instance type comes from the instance metadata service (IMDSv2), and a host that is
not an EC2 instance (a laptop, the CI machine) checks as a CPU node.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gpufleet.lifecycle import instance_types

IMDS = "http://169.254.169.254"


@dataclass(frozen=True, kw_only=True)
class HealthSettings:
    """Expectations and knobs of one node's checks."""

    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    """Name the report and the actions use (the Slurm node name on a Slurm cluster)."""
    instance_type: str | None = None
    """EC2 instance type; None: not an EC2 instance (CPU checks only)."""
    expected_gpus: int = 0
    gpu_model: str = "cpu"
    """Model key of the expected-performance table (``H100``); ``cpu`` without GPUs."""
    expected_efa: int = 0
    fsx_mount: str | None = None
    """Mount point of the FSx for Lustre file system; None: not checked."""
    disk_paths: tuple[str, ...] = ("/",)
    """File systems whose free space is checked (the root, the local NVMe scratch)."""
    disk_warn_free: float = 0.10
    """WARN below this fraction of free space."""
    disk_fail_free: float = 0.03
    memory_warn_available: float = 0.10
    """WARN below this fraction of MemAvailable / MemTotal."""
    memory_fail_available: float = 0.03
    mounts_path: str = "/proc/mounts"
    meminfo_path: str = "/proc/meminfo"
    command_timeout_s: float = 30.0

    @classmethod
    def for_instance_type(cls, instance_type: str | None, **overrides: object) -> HealthSettings:
        """Expectations of a catalog instance type (None: a CPU host)."""
        base = cls(**overrides)  # type: ignore[arg-type]
        if instance_type is None:
            return base
        info = instance_types.lookup(instance_type)
        return replace(base, instance_type=instance_type, expected_gpus=info.gpus,
                       gpu_model=info.gpu_model if info.gpus else "cpu", expected_efa=info.efa_interfaces)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, **overrides: object) -> HealthSettings:
        """From GPUFLEET_* variables, else IMDS; ``overrides`` (CLI flags) win."""
        env = os.environ if env is None else env
        instance_type = overrides.pop("instance_type", None) or env.get("GPUFLEET_INSTANCE_TYPE") or None
        if instance_type is None and env.get("GPUFLEET_NO_IMDS", "") == "":
            instance_type = imds_instance_type()
        if instance_type in {"none", "cpu"}:
            instance_type = None
        if env.get("GPUFLEET_NODE_NAME"):
            overrides.setdefault("node", env["GPUFLEET_NODE_NAME"])
        if env.get("GPUFLEET_FSX_MOUNT"):
            overrides.setdefault("fsx_mount", env["GPUFLEET_FSX_MOUNT"])
        if env.get("GPUFLEET_HEALTH_DISK_PATHS"):
            overrides.setdefault("disk_paths", tuple(p for p in env["GPUFLEET_HEALTH_DISK_PATHS"].split(":") if p))
        return cls.for_instance_type(instance_type, **overrides)


def imds_instance_type(timeout_s: float = 0.5) -> str | None:
    """The instance type from IMDSv2, or None off EC2 (no answer within the timeout)."""
    try:
        token_request = urllib.request.Request(
            f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(token_request, timeout=timeout_s) as response:
            token = response.read().decode()
        request = urllib.request.Request(
            f"{IMDS}/latest/meta-data/instance-type", headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            value = response.read().decode().strip()
    except OSError:
        return None
    return value if value in instance_types.known_instance_types() else None

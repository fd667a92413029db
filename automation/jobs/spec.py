"""The job file: one YAML that runs the same on Slurm and on EKS.

    name: gpt-reference
    backend: slurm                # slurm | eks
    partition: train-h100         # Slurm partition (eks: pool label instead)
    instance_type: p5.48xlarge    # optional; EFA instance types get the EFA/NCCL environment
    nodes: 2
    gpus_per_node: 8
    entrypoint: gpufleet.lifecycle.jobs.gpt_reference   # a module (torchrun -m) or a path ending in .py
    args: ["--steps", "1000"]
    checkpoint_dir: /fsx/checkpoints/gpt-reference
    checkpoint_interval: 100
    max_restarts: 3
    time_limit: "04:00:00"
    env: {NCCL_DEBUG: WARN}
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from gpufleet.infra import catalog, strict_yaml
from gpufleet.infra.errors import ConfigError

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters (newlines above all): none may reach sbatch, a shell or the Kubernetes API."""
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
SLURM_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}")
TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$")


class Backend(StrEnum):
    SLURM = "slurm"
    EKS = "eks"


EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1",
           "NCCL_SOCKET_IFNAME": "^docker,lo,veth"}
"""libfabric's EFA provider under NCCL (aws-ofi-nccl); GPUDirect RDMA on p4d/p5/p6: what a pod's
workers need on an EFA node (the node's own shells get it from bootstrap step 20-nccl-env)."""


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A validated job file."""

    name: str
    """Job name: lowercase letters, digits and '-' (a DNS label, so it also names Kubernetes objects)."""
    backend: Backend
    """Where it runs: ``slurm`` (sbatch + srun torchrun) or ``eks`` (indexed Job + headless Service)."""
    nodes: int
    """Nodes (torchrun --nnodes)."""
    gpus_per_node: int
    """GPUs per node; 0 for a CPU job."""
    entrypoint: str
    """Python module run with ``torchrun -m``, or a script path ending in ``.py``."""
    checkpoint_dir: str
    """Checkpoint folder on shared storage (FSx for Lustre), exported as GPUFLEET_CHECKPOINT_DIR."""
    checkpoint_interval: int = 100
    """Steps between checkpoints, exported as GPUFLEET_CHECKPOINT_INTERVAL."""
    max_restarts: int = 3
    """Worker-group restarts torchrun allows per allocation; also the Kubernetes Job backoffLimit."""
    args: tuple[str, ...] = ()
    """Arguments after the entry point."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every worker."""
    partition: str | None = None
    """Slurm partition; None uses the cluster's default."""
    pool: str = "training"
    """EKS: value of the ``gpufleet.io/pool`` node label the pods select."""
    instance_type: str | None = None
    """Instance type of the nodes; EFA types get the EFA/NCCL environment and EFA devices."""
    image: str | None = None
    """Container image; required on EKS, optional on Slurm (bare-metal Python environment)."""
    procs_per_node: int | None = None
    """Workers per node (torchrun --nproc_per_node); default gpus_per_node, or 1 without GPUs."""
    time_limit: str | None = None
    """Wall-clock limit, Slurm syntax ``[D-]HH:MM:SS``; None: the partition's limit."""
    signal_before_s: int = 120
    """Seconds before the time limit at which the job is told (SIGUSR1) to checkpoint and stop."""
    rdzv_port: int = 29500
    """Port of the c10d rendezvous on the first node."""
    torchrun: str = "torchrun"
    """torchrun command on the nodes (a path when it is not on PATH)."""
    workdir: str | None = None
    """Working directory on the nodes (Slurm --chdir, container workingDir)."""
    namespace: str = "training"
    """EKS namespace."""
    queue: str | None = None
    """EKS: the Kueue LocalQueue the Job is queued in (one per GPU node group, named for the group,
    in the job namespace); required on eks, since Kueue admits only labelled Jobs."""
    fsx_claim: str = "fsx-datasets"
    """EKS: PersistentVolumeClaim of the FSx for Lustre file system."""
    fsx_mount_path: str = "/fsx"
    """EKS: where the FSx claim is mounted in the container."""
    source: str = "<job>"
    """File the spec was read from (for messages)."""

    @property
    def workers_per_node(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    @property
    def efa(self) -> bool:
        return self.instance_type is not None and catalog.lookup(self.instance_type).has_efa

    @property
    def efa_interfaces(self) -> int:
        return catalog.lookup(self.instance_type).efa_interfaces if self.instance_type else 0

    @property
    def time_limit_s(self) -> int | None:
        if self.time_limit is None:
            return None
        m = TIME.match(self.time_limit)
        assert m is not None
        days, h, mi, s = (int(g or 0) for g in m.groups())
        return ((days * 24 + h) * 60 + mi) * 60 + s

    @property
    def is_module(self) -> bool:
        return not self.entrypoint.endswith(".py")

    def job_env(self) -> dict[str, str]:
        """Environment every worker gets: the checkpoint contract, then the user's env."""
        env = {
            "GPUFLEET_JOB_NAME": self.name,
            "GPUFLEET_CHECKPOINT_DIR": self.checkpoint_dir,
            "GPUFLEET_CHECKPOINT_INTERVAL": str(self.checkpoint_interval),
            # Restarted workers must not reuse the agent's shared TCP store (dead peers' addresses).
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        }
        if self.efa:
            env.update(EFA_ENV)
        env.update(self.env)
        return env

    def torchrun_args(self, nnodes: str, endpoint: str, rdzv_id: str) -> list[str]:
        """``torchrun ...`` argv for one node; the three arguments may be shell expressions."""
        argv = [self.torchrun, "--nnodes", nnodes, "--nproc_per_node", str(self.workers_per_node),
                "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", rdzv_id,
                "--max-restarts", str(self.max_restarts),
                # forward the early-warning signal to the workers instead of dying on it
                "--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"]
        argv += ["-m", self.entrypoint] if self.is_module else [self.entrypoint]
        return argv + list(self.args)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "backend": str, "nodes": int, "gpus_per_node": int, "entrypoint": str,
    "checkpoint_dir": str, "checkpoint_interval": int, "max_restarts": int, "args": list, "env": dict,
    "partition": str, "pool": str, "instance_type": str, "image": str, "procs_per_node": int,
    "time_limit": (str, int), "signal_before_s": int, "rdzv_port": int, "torchrun": str, "workdir": str,
    "namespace": str, "fsx_claim": str, "fsx_mount_path": str, "queue": str,
}
TARGET_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("partition", SLURM_NAME, "must be a Slurm partition name: letters, digits, '-', '_', '.'"),
    ("namespace", re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"), "must be a Kubernetes namespace (DNS-1123 label)"),
    ("fsx_claim", DNS_SUBDOMAIN, "must be a Kubernetes object name (DNS-1123 subdomain)"),
    ("queue", DNS_SUBDOMAIN, "must be a Kueue LocalQueue name (DNS-1123 subdomain)"),
    ("pool", LABEL_VALUE, "must be a Kubernetes label value: letters, digits, '-', '_', '.', at most 63"),
    ("image", re.compile(r"[^\s]+"), "must be an image reference without whitespace"),
    ("torchrun", re.compile(r"[^\s]+"), "must be one command or path without whitespace"),
)
"""Job-file strings checked against what their target accepts, beyond control characters."""
_REQUIRED = ("name", "backend", "nodes", "gpus_per_node", "entrypoint", "checkpoint_dir")


def parse_job(raw: Any, source: str) -> JobSpec:
    """Validate a parsed YAML document; every error names the file, the key and the value."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "<document>", raw, "expected a mapping of job keys")
    for key, value in raw.items():
        if key not in _TYPES:
            close = difflib.get_close_matches(str(key), list(_TYPES), n=1)
            raise ConfigError(source, str(key), value, "unknown key", f"did you mean `{close[0]}`?" if close else None)
        expected = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            want = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise ConfigError(source, key, value, f"expected {want}")
    for key in _REQUIRED:
        if key not in raw:
            raise ConfigError(source, key, None, "required key is missing")
    d = dict(raw)

    def bad(key: str, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(source, key, raw.get(key), problem, hint)

    for key, value in d.items():
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and CONTROL.search(text):
                raise bad(key, "contains a newline or another control character (it would reach a shell, sbatch "
                          "or the Kubernetes API)")
    for key, rule, problem in TARGET_RULES:
        if key in d and not rule.fullmatch(d[key]):
            raise bad(key, problem)
    if not NAME.fullmatch(d["name"]):
        raise bad("name", "must be a DNS label: lowercase letters, digits, '-', at most 52 characters")
    try:
        d["backend"] = Backend(d["backend"])
    except ValueError:
        raise bad("backend", "expected slurm or eks") from None
    for key, low in (("nodes", 1), ("gpus_per_node", 0), ("checkpoint_interval", 1), ("max_restarts", 0),
                     ("procs_per_node", 1), ("signal_before_s", 0), ("rdzv_port", 1)):
        if key in d and d[key] < low:
            raise bad(key, f"must be >= {low}")
    if d.get("rdzv_port", 1) > 65535:
        raise bad("rdzv_port", "must be <= 65535")
    if not d["checkpoint_dir"].startswith("/"):
        raise bad("checkpoint_dir", "must be an absolute path on shared storage (FSx for Lustre)")
    for key in ("checkpoint_dir", "workdir", "fsx_mount_path"):
        if key in d and (".." in PurePosixPath(d[key]).parts or not d[key].startswith("/")):
            raise bad(key, "must be an absolute path without '..' (it must stay under the directory it names)")
    if "time_limit" in d:
        if isinstance(d["time_limit"], int):  # minutes, as sbatch --time takes them
            d["time_limit"] = f"{d['time_limit'] // 60:02d}:{d['time_limit'] % 60:02d}:00"
        if not TIME.fullmatch(d["time_limit"]):
            raise bad("time_limit", "expected [D-]HH:MM:SS or minutes")
    d["args"] = tuple(str(a) for a in d.get("args", ()))
    env = d.get("env", {})
    for k, v in env.items():
        if not isinstance(k, str) or not ENV_KEY.fullmatch(k):
            raise ConfigError(source, f"env.{k}", v, "not a valid environment variable name")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ConfigError(source, f"env.{k}", v, "expected a string (quote it)")
        if isinstance(v, str) and CONTROL.search(v):
            raise ConfigError(source, f"env.{k}", v, "contains a newline or another control character")
    d["env"] = {k: str(v) for k, v in env.items()}
    if "instance_type" in d:
        try:
            info = catalog.lookup(d["instance_type"])
        except catalog.UnknownInstanceTypeError as error:
            raise bad("instance_type", str(error)) from None
        if d["gpus_per_node"] > info.gpus:
            raise bad("gpus_per_node", f"{d['instance_type']} has {info.gpus} GPUs")
    if d["backend"] is Backend.EKS:
        if not d.get("image"):
            raise bad("image", "required on eks: pods run a container image")
        if d["gpus_per_node"] == 0:
            raise bad("gpus_per_node", "eks jobs run on the GPU node groups; ask for at least one GPU")
        mount = d.get("fsx_mount_path", "/fsx").rstrip("/")
        if not d["checkpoint_dir"].startswith(mount + "/"):
            raise bad("checkpoint_dir", f"must lie under the FSx mount {mount}/ (pods see nothing else shared)")
        if not d.get("queue"):
            raise bad("queue", "required on eks: the Kueue LocalQueue of the node group (Kueue admits only "
                      "Jobs that name one)", "the LocalQueue is named for the GPU node group, e.g. train-h100")
    spec = JobSpec(source=source, **d)
    limit = spec.time_limit_s
    if limit is not None and spec.signal_before_s >= limit:
        raise bad("signal_before_s", f"must be shorter than time_limit ({limit} s)")
    return spec


def load_job(path: str | Path) -> JobSpec:
    p = Path(path)
    return parse_job(strict_yaml.load(p, "job file"), str(p))


"""Render slurm.conf, gres.conf and cgroup.conf from a typed cluster description.

Pure: no pulumi import, no I/O, and plain dataclasses of its own (this is node-bundle code: it
knows nothing of stack files). The control plane builds a :class:`SlurmClusterSpec` from a stack
(``gpufleet.infra.slurm_plan.spec_from_stack``: one partition per node group, GRES from the
instance catalog) plus a :class:`SlurmSite` holding everything that differs between places the
cluster runs (hostnames, ports, directories, users, timeouts, static nodes). The same function
renders the head node's configuration on AWS and the configuration the tests feed to a real local
Slurm.

Cloud nodes are Slurm *dynamic nodes*: nothing about them is in slurm.conf. Each one registers
at boot with ``slurmd -Z --conf "Feature=<group> Gres=gpu:<model>:<n>"``; a ``NodeSet`` keyed on
that feature puts it in its group's partition, so scaling the Auto Scaling group adds and removes
Slurm nodes. ``MaxNodeCount`` reserves room for every group's maximum size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from gpufleet.lifecycle.layout import lifecycle_dir

SLURM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
"""A hostname or an IPv4 address: what may follow ``Host=`` / ``Addr=`` in a config file."""
UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PLUGIN = re.compile(r"^[a-z_]+/[a-z0-9_]+$")
EX_TEMPFAIL = 75


@dataclass(frozen=True, kw_only=True)
class PartitionSpec:
    """One partition per GPU node group; its nodes join dynamically."""

    name: str
    """Partition name: the node group's name."""
    feature: str
    """Feature a node registers with to land in this partition (the NodeSet key)."""
    max_nodes: int
    """Most nodes the group can hold (the Auto Scaling group's maximum)."""
    gpus_per_node: int
    """GPUs each node advertises as GRES."""
    gpu_type: str
    """GRES type, lower-case GPU model (``h100``); jobs may ask ``--gres=gpu:h100:8``."""
    is_default: bool = False
    """Jobs that name no partition go here."""
    max_time: str = "INFINITE"
    """Partition time limit in Slurm's format."""
    enable_exclusive_nodes: bool = True
    """A job gets whole nodes (GPU training); off lets small jobs share a node."""

    def __post_init__(self) -> None:
        for attr in ("name", "feature"):
            if not SLURM_NAME.match(getattr(self, attr)):
                raise ValueError(f"PartitionSpec.{attr}={getattr(self, attr)!r} is not a valid Slurm name")
        if self.max_nodes < 0 or self.gpus_per_node < 0:
            raise ValueError(f"PartitionSpec {self.name}: max_nodes and gpus_per_node must be >= 0")

    @property
    def nodeset(self) -> str:
        return f"{self.name}-nodes"

    @property
    def gres(self) -> str:
        """The ``Gres=`` value a node of this partition registers with ('' without GPUs)."""
        return f"gpu:{self.gpu_type}:{self.gpus_per_node}" if self.gpus_per_node else ""

    def dynamic_node_conf(self) -> str:
        """The ``slurmd -Z --conf`` string a node of this partition registers with."""
        parts = [f"Feature={self.feature}"]
        if self.gres:
            parts.append(f"Gres={self.gres}")
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class StaticNodeSpec:
    """A node written into slurm.conf (a fixed host, or one slurmd of several on one host)."""

    name: str
    """NodeName."""
    hostname: str
    """NodeHostname: the host the slurmd runs on."""
    addr: str
    """NodeAddr: where slurmctld reaches it."""
    port: int
    """Port its slurmd listens on (distinct per node when several share a host)."""
    cpus: int
    """CPUs Slurm may allocate on it."""
    real_memory_mib: int
    """Memory Slurm may allocate on it."""
    features: tuple[str, ...] = ()
    """Features; a partition's feature here puts the node in that partition."""
    gres: str = ""
    """GRES, e.g. ``gpu:h100:8``; '' for none."""


CRED_EXPIRE_FLOOR_S = 5
"""Slurm 22.05's lowest AuthInfo cred_expire (src/common/slurm_cred.c)."""
CRED_EXPIRE_MESSAGES = 3
"""Message timeouts a job credential outlives: slurmctld to the first slurmd and two tree hops."""


@dataclass(frozen=True, kw_only=True)
class SlurmSite:
    """Everything about where the cluster runs, as opposed to what the stack asks for."""

    controller_hostname: str
    """Short hostname of the slurmctld host."""
    controller_addr: str
    """Address nodes and clients reach slurmctld on."""
    controller_port: int = 6817
    """SlurmctldPort."""
    slurmd_port: int = 6818
    """SlurmdPort: the port of every node not given one explicitly (all dynamic nodes)."""
    slurm_user: str = "slurm"
    """User slurmctld runs as."""
    state_dir: str = "/var/spool/slurmctld"
    """StateSaveLocation."""
    spool_dir: str = "/var/spool/slurmd/%n"
    """SlurmdSpoolDir; ``%n`` keeps several slurmd on one host apart."""
    log_dir: str = "/var/log/slurm"
    """Where slurmctld.log and slurmd-<node>.log go."""
    run_dir: str = "/run/slurm"
    """Where pid files go."""
    munge_socket: str = "/run/munge/munge.socket.2"
    """munged's socket (auth and job credentials)."""
    prolog: str | None = f"{lifecycle_dir()}/slurm/prolog.sh"
    """Runs on each node of an allocation before the job (PrologFlags=Alloc)."""
    epilog: str | None = f"{lifecycle_dir()}/slurm/epilog.sh"
    """Runs on each node after the job."""
    health_check_program: str | None = f"{lifecycle_dir()}/health/slurm_healthcheck.sh"
    """Runs on every node each interval; drains the node on failure. Slurm gives it no PATH."""
    health_check_interval_s: int = 300
    """Seconds between health checks."""
    slurmd_timeout_s: int = 120
    """A node silent this long is DOWN and its jobs are requeued."""
    message_timeout_s: int = 10
    """MessageTimeout: also how long a message to a dead node keeps retrying before it fails."""
    cred_expire_s: int = 30
    """Job credential lifetime; a requeued job waits this long plus one second before it restarts.
    Slurm's default is 120 s and its floor 5 s (below it slurmd logs an error and uses 120). The
    credential must outlive a launch's delivery: slurmctld signs it, the launch is forwarded
    through at most two TreeWidth (50) hops up to 2,500 nodes, each given MessageTimeout; the
    Prolog (a mount check) runs after the check. So ``CRED_EXPIRE_MESSAGES`` x the default
    MessageTimeout (10 s)."""
    kill_wait_s: int = 30
    """Seconds between SIGTERM and SIGKILL when a job ends: time to write a checkpoint."""
    min_job_age_s: int = 300
    """How long finished jobs stay visible to squeue."""
    scheduler_parameters: tuple[str, ...] = ("bf_continue", "bf_interval=30")
    """SchedulerParameters."""
    select_type_parameters: str = "CR_Core_Memory"
    """SelectTypeParameters for select/cons_tres."""
    proctrack_type: str = "proctrack/cgroup"
    """ProctrackType; proctrack/cgroup also writes cgroup.conf."""
    task_plugin: str = "task/cgroup,task/affinity"
    """TaskPlugin."""
    requeue_exit_codes: tuple[int, ...] = (EX_TEMPFAIL,)
    """Exit codes that requeue a batch job (a job asking to be restarted elsewhere)."""
    static_nodes: tuple[StaticNodeSpec, ...] = ()
    """Nodes listed in slurm.conf; cloud nodes are dynamic and never listed."""
    slurmctld_debug: str = "info"
    """SlurmctldDebug level."""
    slurmd_debug: str = "info"
    """SlurmdDebug level."""
    accounting: bool = True
    """slurmdbd records every job (``sacct``, GPU-hours per job); False renders accounting_storage/none."""
    slurmdbd_port: int = 6819
    """AccountingStoragePort / DbdPort. slurmdbd runs on the controller's host (DbdHost, DbdAddr)."""
    job_acct_gather_type: str = "jobacct_gather/cgroup"
    """JobAcctGatherType: cgroup with proctrack/cgroup, linux with proctrack/linuxproc."""
    storage_host: str = "localhost"
    """StorageHost: MariaDB on the head, reached on its unix socket (``localhost``)."""
    storage_port: int = 3306
    """StoragePort (used when StorageHost is not localhost)."""
    storage_db: str = "slurm_acct_db"
    """StorageLoc: the accounting database."""
    slurmdbd_debug: str = "info"
    """DebugLevel of slurmdbd."""

    def __post_init__(self) -> None:
        for attr in ("controller_hostname", "controller_addr", "storage_host"):
            if not HOST.match(getattr(self, attr)):
                raise ValueError(f"SlurmSite.{attr}={getattr(self, attr)!r} is not a hostname or IPv4 address")
        for attr in ("controller_port", "slurmd_port", "slurmdbd_port", "storage_port"):
            value = getattr(self, attr)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"SlurmSite.{attr}={value!r} is not a TCP port (1-65535)")
        if not UNIX_USER.match(self.slurm_user):
            raise ValueError(f"SlurmSite.slurm_user={self.slurm_user!r} is not a user name")
        if not DB_NAME.match(self.storage_db):
            raise ValueError(f"SlurmSite.storage_db={self.storage_db!r} is not a database name")
        if not PLUGIN.match(self.job_acct_gather_type) or not self.job_acct_gather_type.startswith("jobacct_gather/"):
            raise ValueError(f"SlurmSite.job_acct_gather_type={self.job_acct_gather_type!r}: expected jobacct_gather/<plugin>")
        if self.cred_expire_s < CRED_EXPIRE_FLOOR_S:
            # Slurm would not refuse it: it logs an error and silently uses 120 s.
            raise ValueError(f"SlurmSite.cred_expire_s={self.cred_expire_s}: Slurm's floor is {CRED_EXPIRE_FLOOR_S} s")


@dataclass(frozen=True, kw_only=True)
class SlurmClusterSpec:
    """A Slurm cluster: what the stack asks for (partitions) and where it runs (site)."""

    cluster_name: str
    """ClusterName."""
    partitions: tuple[PartitionSpec, ...]
    """One per GPU node group."""
    site: SlurmSite
    """Environment-specific parameters."""
    extra_node_slots: int = field(default=0)
    """Room in MaxNodeCount beyond the partitions' maxima (login nodes, spares)."""

    def __post_init__(self) -> None:
        if not SLURM_NAME.match(self.cluster_name):
            raise ValueError(f"SlurmClusterSpec.cluster_name={self.cluster_name!r} is not a valid Slurm name")
        names = [p.name for p in self.partitions]
        if len(set(names)) != len(names):
            raise ValueError(f"SlurmClusterSpec.partitions: names repeat: {names}")
        static = [n.name for n in self.site.static_nodes]
        if len(set(static)) != len(static):
            raise ValueError(f"SlurmSite.static_nodes: names repeat: {static}")
        clash = set(static) & {p.nodeset for p in self.partitions}
        if clash:
            raise ValueError(f"SlurmSite.static_nodes: {sorted(clash)} collide with NodeSet names")
        if sum(p.is_default for p in self.partitions) > 1:
            raise ValueError("SlurmClusterSpec.partitions: more than one default partition")

    @property
    def max_node_count(self) -> int:
        return sum(p.max_nodes for p in self.partitions) + len(self.site.static_nodes) + self.extra_node_slots

    def partition(self, name: str) -> PartitionSpec:
        for p in self.partitions:
            if p.name == name:
                return p
        raise KeyError(f"no partition {name!r}; have {[p.name for p in self.partitions]}")


def _line(key: str, value: object) -> str:
    return f"{key}={value}"


def _node_line(node: StaticNodeSpec) -> str:
    parts = [f"NodeName={node.name}", f"NodeHostname={node.hostname}", f"NodeAddr={node.addr}",
             f"Port={node.port}", f"CPUs={node.cpus}", f"RealMemory={node.real_memory_mib}"]
    if node.features:
        parts.append(f"Feature={','.join(node.features)}")
    if node.gres:
        parts.append(f"Gres={node.gres}")
    parts.append("State=UNKNOWN")
    return " ".join(parts)


def _accounting_lines(s: SlurmSite) -> list[str]:
    if not s.accounting:
        return ["# Accounting: none (no slurmdbd)", _line("AccountingStorageType", "accounting_storage/none"),
                _line("JobCompType", "jobcomp/none")]
    return [
        "# Accounting: slurmdbd on the controller's host; GPUs are a tracked resource (sacct AllocTRES gres/gpu)",
        _line("AccountingStorageType", "accounting_storage/slurmdbd"),
        _line("AccountingStorageHost", s.controller_addr),
        _line("AccountingStoragePort", s.slurmdbd_port),
        # Connections to slurmdbd authenticate through this munge socket, not AuthInfo's.
        _line("AccountingStoragePass", s.munge_socket),
        _line("AccountingStorageTRES", "gres/gpu"),
        _line("JobAcctGatherType", s.job_acct_gather_type),
        _line("JobCompType", "jobcomp/none"),
    ]


def render_slurm_conf(spec: SlurmClusterSpec, *, source: str = "") -> str:
    """slurm.conf text. Deterministic: equal specs give equal bytes."""
    s = spec.site
    out: list[str] = [
        f"# slurm.conf for cluster {spec.cluster_name}, rendered by gpufleet lifecycle/slurm/conf.py"
        + (f" from {source}" if source else "") + ".",
        "# Do not edit on a node: change the stack and re-render.",
        "",
        "# Cluster and controller",
        _line("ClusterName", spec.cluster_name),
        _line("SlurmctldHost", f"{s.controller_hostname}({s.controller_addr})"),
        _line("SlurmctldPort", s.controller_port),
        _line("SlurmdPort", s.slurmd_port),
        _line("SlurmUser", s.slurm_user),
        _line("SlurmdUser", "root"),
        # Listen only on the configured addresses, never on every interface.
        _line("CommunicationParameters", "NoInAddrAny,NoCtldInAddrAny"),
        "",
        "# Authentication: munge. A requeued job waits cred_expire + 1 s before it starts again",
        "# (Slurm's default: 120 s); it must outlive a launch's delivery: slurmctld to slurmd and two",
        "# tree hops, each given MessageTimeout.",
        _line("AuthType", "auth/munge"),
        _line("CredType", "cred/munge"),
        _line("AuthInfo", f"socket={s.munge_socket},cred_expire={s.cred_expire_s}"),
        "",
        "# State, spool, logs",
        _line("StateSaveLocation", s.state_dir),
        _line("SlurmdSpoolDir", s.spool_dir),
        _line("SlurmctldPidFile", f"{s.run_dir}/slurmctld.pid"),
        _line("SlurmdPidFile", f"{s.run_dir}/slurmd-%n.pid"),
        _line("SlurmctldLogFile", f"{s.log_dir}/slurmctld.log"),
        _line("SlurmdLogFile", f"{s.log_dir}/slurmd-%n.log"),
        _line("SlurmctldDebug", s.slurmctld_debug),
        _line("SlurmdDebug", s.slurmd_debug),
        "",
        "# Processes and resources",
        _line("ProctrackType", s.proctrack_type),
        _line("TaskPlugin", s.task_plugin),
        _line("MpiDefault", "none"),
        _line("SelectType", "select/cons_tres"),
        _line("SelectTypeParameters", s.select_type_parameters),
        _line("GresTypes", "gpu"),
        "",
        "# Scheduling",
        _line("SchedulerType", "sched/backfill"),
        _line("SchedulerParameters", ",".join(s.scheduler_parameters)),
        "",
        "# Failures: a DOWN node's batch jobs are requeued; a node that comes back serves again",
        _line("JobRequeue", 1),
        _line("ReturnToService", 1),
        _line("SlurmdTimeout", s.slurmd_timeout_s),
        _line("MessageTimeout", s.message_timeout_s),
        _line("KillWait", s.kill_wait_s),
        _line("MinJobAge", s.min_job_age_s),
        _line("InactiveLimit", 0),
    ]
    if s.requeue_exit_codes:
        out.append(_line("RequeueExit", ",".join(map(str, s.requeue_exit_codes))))
    out += ["", "# Node lifecycle hooks"]
    if s.prolog:
        out += [_line("Prolog", s.prolog), _line("PrologFlags", "Alloc")]
    if s.epilog:
        out.append(_line("Epilog", s.epilog))
    if s.health_check_program:
        out += [
            _line("HealthCheckProgram", s.health_check_program),
            _line("HealthCheckInterval", s.health_check_interval_s),
            _line("HealthCheckNodeState", "ANY,CYCLE"),
        ]
    out += [
        "",
        "# Dynamic nodes: cloud nodes register with `slurmd -Z`; none are listed below",
        _line("MaxNodeCount", spec.max_node_count),
        # Dynamic nodes are not in every node's slurm.conf, so message fan-out through them fails.
        _line("TreeWidth", 65533),
        "",
    ]
    out += _accounting_lines(s)
    if s.static_nodes:
        out += ["", "# Static nodes"]
        out += [_node_line(n) for n in s.static_nodes]
    out += ["", "# Partitions: one per node group; a node joins through its group's feature"]
    for p in spec.partitions:
        out.append(f"NodeSet={p.nodeset} Feature={p.feature}")
    for p in spec.partitions:
        out.append(" ".join([
            f"PartitionName={p.name}", f"Nodes={p.nodeset}", f"Default={'YES' if p.is_default else 'NO'}",
            f"MaxTime={p.max_time}", "State=UP", f"OverSubscribe={'EXCLUSIVE' if p.enable_exclusive_nodes else 'NO'}",
        ]))
    return "\n".join(out) + "\n"


def _gpu_files(device_dir: str, count: int) -> str:
    return f"{device_dir}/nvidia0" if count == 1 else f"{device_dir}/nvidia[0-{count - 1}]"


def render_gres_conf(nodes: Iterable[StaticNodeSpec], *, device_dir: str = "/dev") -> str:
    """gres.conf for static nodes: each node's GPU device files."""
    lines = ["# gres.conf rendered by gpufleet lifecycle/slurm/conf.py"]
    for node in nodes:
        if node.gres:
            _, gpu_type, count = _parse_gres(node.gres)
            lines.append(f"NodeName={node.name} Name=gpu Type={gpu_type} File={_gpu_files(device_dir, count)}")
    return "\n".join(lines) + "\n"


def render_node_gres_conf(partition: PartitionSpec, *, device_dir: str = "/dev") -> str:
    """gres.conf a dynamic node of ``partition`` writes for itself: its GPU device files."""
    lines = ["# gres.conf rendered by gpufleet lifecycle/slurm/conf.py"]
    if partition.gpus_per_node:
        lines.append(f"Name=gpu Type={partition.gpu_type} File={_gpu_files(device_dir, partition.gpus_per_node)}")
    return "\n".join(lines) + "\n"


def render_cgroup_conf(spec: SlurmClusterSpec) -> str | None:
    """cgroup.conf when the cluster tracks processes with cgroups, else None."""
    if "cgroup" not in spec.site.proctrack_type and "cgroup" not in spec.site.task_plugin:
        return None
    return "\n".join([
        "# cgroup.conf rendered by gpufleet lifecycle/slurm/conf.py",
        "CgroupPlugin=autodetect",
        "ConstrainCores=yes",
        "ConstrainDevices=yes",
        "ConstrainRAMSpace=yes",
    ]) + "\n"


def _parse_gres(gres: str) -> tuple[str, str, int]:
    name, gpu_type, count = gres.split(":")
    return name, gpu_type, int(count)

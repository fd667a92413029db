"""A real Slurm cluster on this host for tests: munged, slurmctld and several slurmd.

The configuration is rendered by the product renderer (``lifecycle/slurm/conf.py``) from a stack
file (the training reference stack unless told otherwise), with a :class:`SlurmSite` for this
host: loopback addresses, free ports, state in a temporary directory, root as SlurmUser, short
timeouts. Static nodes ``node1..nodeN`` carry the first partition's feature, so they sit in its
partition (``train-h100`` for the training stack) and advertise its GPUs as GRES counts.

Interface (use the ``local_slurm`` / ``make_local_slurm`` fixtures from tests/conftest.py)::

    slurm = local_slurm                      # started, every static node idle
    slurm.env                                # os.environ + SLURM_CONF, for your own subprocesses
    slurm.run("squeue", "-h")                # CompletedProcess; raises SlurmCommandError on rc != 0
    job = slurm.sbatch("#!/bin/bash\\nsrun hostname\\n", "-N", "1")   # job id (int)
    slurm.job(job)                           # JobInfo(state, nodes, restarts, reason, exit_code)
    slurm.node("node1")                      # NodeInfo(name, state, reason, features, addr)
    slurm.wait_until(lambda: slurm.job(job).state == "COMPLETED", timeout=30, what="job done")
    slurm.crash_node("node1")                # SIGKILL the node's PID namespace: slurmd, steps, job
    slurm.restart_node("node1")              # start its slurmd again (it re-registers)
    slurm.register_dynamic_node("dyn1")      # `slurmd -Z` with the partition's feature and GRES
    slurm.register_dynamic_node("dyn2", held=True)   # registered held, as GPU nodes' bootstrap does
    slurm.stop()                             # ends only the processes this harness started

``make_local_slurm(num_nodes=3, health_check_program=..., prolog=..., epilog=...,
slurmd_timeout_s=..., health_check_interval_s=..., accounting=True)`` starts a cluster with other
settings. ``accounting=True`` also runs a real MariaDB (``mariadb-install-db`` + ``mariadbd`` with
its own datadir and unix socket under the cluster's root, no networking) and slurmdbd on it, from
the product's slurmdbd.conf renderer, before slurmctld; the cluster, account ``ACCOUNT`` and root
as its user are registered with ``sacctmgr -i``, so ``sacct`` reports every job.
Slurm runs hooks without PATH: give absolute paths, and have scripts set PATH themselves.

Every slurmd runs as PID 1's child in its own PID namespace (``unshare --pid --fork
--mount-proc --kill-child``) so a crash takes its job steps with it, as a node failure would.
Dynamic nodes also get their own hostname and a loopback address of their own (127.a.b.c): Slurm
reaches every dynamic node on SlurmdPort, so two on one address would collide.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from gpufleet.infra.slurm_plan import spec_from_stack
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.slurm import dbd
from gpufleet.lifecycle.slurm.conf import (
    SlurmClusterSpec,
    SlurmSite,
    StaticNodeSpec,
    render_gres_conf,
    render_node_gres_conf,
    render_slurm_conf,
)
from gpufleet.lifecycle.slurm.hold import HOLD_SCRIPT

REPO = Path(__file__).resolve().parent.parent
TRAINING_STACK = REPO / "stacks" / "Pulumi.training.yaml"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "unshare")
ACCOUNTING_BINARIES = ("slurmdbd", "sacctmgr", "sacct", "mariadbd", "mariadb-install-db", "mariadb")
ACCOUNT = "research"
"""The Slurm account the harness registers (root is its user) when accounting is on."""
T = TypeVar("T")


class SlurmCommandError(RuntimeError):
    """A Slurm client command failed."""


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    state: str
    """PENDING, RUNNING, COMPLETED, FAILED, REQUEUED, ..."""
    nodes: str
    """NodeList ('' or '(null)' while pending)."""
    restarts: int
    """How many times Slurm requeued the job."""
    reason: str
    exit_code: str
    """``<code>:<signal>``."""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: str
    """Full state, e.g. IDLE, ALLOCATED, DOWN+NOT_RESPONDING, IDLE+DRAIN, IDLE+DYNAMIC_NORM."""
    reason: str
    features: str
    addr: str

    @property
    def base_state(self) -> str:
        return self.state.split("+")[0]

    @property
    def flags(self) -> set[str]:
        return set(self.state.split("+")[1:])


@dataclass
class _Daemon:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment on top of the cluster's."""
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class LocalSlurm:
    """A running local cluster. Build it with :func:`start_local_slurm`."""

    root: Path
    spec: SlurmClusterSpec
    conf_path: Path
    env: dict[str, str]
    node_names: list[str]
    """Static nodes, in order."""
    bringup_s: float = 0.0
    """Seconds from starting munged to every static node idle."""
    dynamic_nodes: dict[str, str] = field(default_factory=dict)
    """Dynamic node name -> its loopback address."""
    _daemons: dict[str, _Daemon] = field(default_factory=dict)
    _addr_prefix: str = "127.0.0"
    _next_host: int = 2

    # ------------------------------------------------------------------ commands
    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (or anything) with this cluster's SLURM_CONF."""
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise SlurmCommandError(f"{' '.join(argv)} -> rc {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def sbatch(self, script: str, *args: str) -> int:
        """Submit a batch script (its text); returns the job id."""
        jobs = self.root / "jobs"
        jobs.mkdir(exist_ok=True)
        path = jobs / f"job-{time.monotonic_ns()}.sh"
        path.write_text(script)
        out = self.run("sbatch", "--parsable", "-D", str(jobs), *args, str(path)).stdout.strip()
        return int(out.split(";")[0])

    def job(self, job_id: int) -> JobInfo:
        text = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout
        return JobInfo(
            job_id=job_id, state=_field(text, "JobState"), nodes=_field(text, "NodeList"),
            restarts=int(_field(text, "Restarts") or 0), reason=_field(text, "Reason"),
            exit_code=_field(text, "ExitCode"),
        )

    def node(self, name: str) -> NodeInfo:
        text = self.run("scontrol", "-o", "show", "node", name).stdout
        return NodeInfo(name=name, state=_field(text, "State"), reason=_field(text, "Reason"),
                        features=_field(text, "AvailableFeatures"), addr=_field(text, "NodeAddr"))

    def nodes(self) -> dict[str, str]:
        """Every node Slurm knows, name -> state (sinfo's compact state, e.g. idle, alloc, down*)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_until(self, predicate: Callable[[], T], timeout: float, what: str = "condition",
                   interval: float = 0.1) -> T:
        """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
            except SlurmCommandError as err:
                value, last = None, err  # type: ignore[assignment]
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not true after {timeout:.1f}s (last error: {last}); logs in {self.root / 'log'}")
            time.sleep(interval)

    # ------------------------------------------------------------------ nodes
    def crash_node(self, name: str) -> None:
        """Kill the node's whole PID namespace with SIGKILL: slurmd, slurmstepd and job processes."""
        daemon = self._daemons[name]
        if daemon.proc is None or daemon.proc.poll() is not None:
            raise RuntimeError(f"node {name} is not running")
        inner = _children(daemon.proc.pid)
        # Killing the namespace's init makes the kernel kill everything in the namespace; unshare
        # then exits and we reap it. Killing unshare first would orphan the init instead.
        for pid in inner or [daemon.proc.pid]:
            os.kill(pid, signal.SIGKILL)
        daemon.proc.wait(timeout=10)

    def restart_node(self, name: str, states: tuple[str, ...] = ("IDLE", "MIXED", "ALLOCATED")) -> None:
        """Start a crashed or stopped node's slurmd again; waits until it has registered in one of
        ``states`` (a node held by its reservation registers MAINT)."""
        daemon = self._daemons[name]
        if daemon.proc is not None and daemon.proc.poll() is None:
            raise RuntimeError(f"node {name} is still running")
        self._spawn(daemon)
        if name in self.dynamic_nodes:
            self._pin_dynamic_addr(name)
        self.wait_until(lambda: self.node(name).base_state in states
                        and "NOT_RESPONDING" not in self.node(name).flags,
                        timeout=30, what=f"node {name} back")

    def register_dynamic_node(self, name: str, partition: str | None = None, *,
                              conf: str | None = None, wait: bool = True, held: bool = False) -> NodeInfo:
        """Start ``slurmd -Z`` for a new node, as a cloud node's bootstrap does.

        ``conf`` is the ``--conf`` string; by default the partition's own (feature + GRES), the
        same string lifecycle/bootstrap passes on AWS. ``held``: first run the bundle's
        ``hold-node.sh`` as the GPU nodes' bootstrap does (the node registers held by its
        ``gpufleet-unverified-<name>`` reservation).
        """
        part = self.spec.partition(partition) if partition else self.spec.partitions[0]
        addr = f"{self._addr_prefix}.{self._next_host}"
        self._next_host += 1
        node_dir = self.root / "nodes" / name
        node_dir.mkdir(parents=True)
        (self.root / "spool" / name).mkdir(exist_ok=True)
        # A cloud node writes its own gres.conf beside slurm.conf.
        shutil.copy(self.conf_path, node_dir / "slurm.conf")
        (node_dir / "gres.conf").write_text(render_node_gres_conf(part, device_dir=str(self.root / "dev")))
        (node_dir / "hosts").write_text(f"127.0.0.1 localhost\n{addr} {name}\n")
        node_conf = conf if conf is not None else part.dynamic_node_conf()
        if held:
            self.run("bash", str(REPO / "lifecycle" / HOLD_SCRIPT), name, node_conf)
        setup = 'mount --bind "$HOSTS" /etc/hosts && hostname "$NODE"'
        argv = _namespace(["--uts"], setup, ["slurmd", "-D", "-Z", "-N", name, "--conf", node_conf])
        daemon = _Daemon(name=name, argv=argv, log=self.root / "log" / f"out-{name}.log",
                         env={"SLURM_CONF": str(node_dir / "slurm.conf"), "HOSTS": str(node_dir / "hosts"), "NODE": name})
        self._daemons[name] = daemon
        self.dynamic_nodes[name] = addr
        self._spawn(daemon)
        self._pin_dynamic_addr(name)
        if wait:
            self.wait_until(lambda: self.node(name).base_state in ("IDLE", "MAINT")
                            and "NOT_RESPONDING" not in self.node(name).flags,
                            timeout=30, what=f"dynamic node {name} idle")
        return self.node(name)

    def _pin_dynamic_addr(self, name: str) -> None:
        # slurmctld records a dynamic node's address from the registration connection, which on
        # loopback is always 127.0.0.1; on a real network it is the node's own address.
        self.wait_until(lambda: name in self.nodes(), timeout=30, what=f"node {name} registered")
        self.run("scontrol", "update", f"NodeName={name}", f"NodeAddr={self.dynamic_nodes[name]}")

    # ------------------------------------------------------------------ processes
    def _spawn(self, daemon: _Daemon) -> None:
        with daemon.log.open("ab") as log:
            daemon.proc = subprocess.Popen(daemon.argv, env=dict(self.env, **daemon.env), stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        """Stop every process this harness started (by PID): nodes, slurmctld, slurmdbd, mariadbd, munged."""
        last = ("slurmctld", "slurmdbd", "mariadbd", "munged")
        graceful = ("slurmdbd", "mariadbd", "munged")
        for name in [n for n in self._daemons if n not in last] + list(last):
            daemon = self._daemons.get(name)
            if daemon is None or daemon.proc is None or daemon.proc.poll() is not None:
                continue
            targets = _children(daemon.proc.pid) if name not in graceful else []
            for pid in targets or [daemon.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if name not in graceful else signal.SIGTERM)
            try:
                # mariadbd flushes InnoDB on SIGTERM; give it longer than a slurmd.
                daemon.proc.wait(timeout=30 if name == "mariadbd" else 5)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait(timeout=5)

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_slurm(
    *,
    num_nodes: int = 3,
    stack_file: Path = TRAINING_STACK,
    root: Path | None = None,
    cpus_per_node: int = 2,
    prolog: str | None = None,
    epilog: str | None = None,
    health_check_program: str | None = None,
    health_check_interval_s: int = 5,
    slurmd_timeout_s: int = 3,
    message_timeout_s: int = 2,
    cred_expire_s: int = 5,
    accounting: bool = False,
    timeout: float = 30,
) -> LocalSlurm:
    """Start munged, slurmctld and ``num_nodes`` slurmd; return when every node is idle.

    ``root`` must be a short path: Slurm's step sockets live under it and must fit in 108 bytes.
    """
    root = Path(tempfile.mkdtemp(prefix="gpufleet-slurm-", dir="/tmp")) if root is None else root
    for sub in ("etc", "state", "spool", "log", "run", "munge", "jobs", "nodes", "dev", "db"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    ports = _free_ports(2 + num_nodes + (1 if accounting else 0))
    stack = load_stack(stack_file)
    probe = spec_from_stack(stack, SlurmSite(controller_hostname="localhost", controller_addr="127.0.0.1"))
    first = probe.partitions[0]
    static = tuple(
        StaticNodeSpec(name=f"node{i + 1}", hostname="localhost", addr="127.0.0.1", port=ports[2 + i],
                       cpus=cpus_per_node, real_memory_mib=1000, features=(first.feature,), gres=first.gres)
        for i in range(num_nodes)
    )
    site = SlurmSite(
        controller_hostname="localhost", controller_addr="127.0.0.1",
        controller_port=ports[0], slurmd_port=ports[1], slurm_user="root",
        state_dir=str(root / "state"), spool_dir=str(root / "spool" / "%n"), log_dir=str(root / "log"),
        run_dir=str(root / "run"), munge_socket=str(root / "munge" / "munge.socket"),
        prolog=prolog, epilog=epilog, health_check_program=health_check_program,
        health_check_interval_s=health_check_interval_s, slurmd_timeout_s=slurmd_timeout_s,
        message_timeout_s=message_timeout_s,
        cred_expire_s=cred_expire_s, kill_wait_s=2, min_job_age_s=300,
        scheduler_parameters=("sched_interval=1", "bf_interval=1"), select_type_parameters="CR_Core",
        proctrack_type="proctrack/linuxproc", task_plugin="task/none", static_nodes=static,
        slurmctld_debug="verbose", slurmd_debug="verbose",
        accounting=accounting, slurmdbd_port=ports[-1] if accounting else 6819,
        job_acct_gather_type="jobacct_gather/linux", slurmdbd_debug="verbose",
    )
    spec = replace(probe, site=site)
    conf_path = root / "etc" / "slurm.conf"
    conf_path.write_text(render_slurm_conf(spec, source=str(stack_file)))
    _fake_gpu_devices(root / "dev", max(p.gpus_per_node for p in spec.partitions))
    (root / "etc" / "gres.conf").write_text(render_gres_conf(static, device_dir=str(root / "dev")))
    if accounting:
        dbd_conf = root / "etc" / "slurmdbd.conf"
        dbd_conf.write_text(dbd.render_slurmdbd_conf(spec))
        dbd_conf.chmod(dbd.MODE)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)

    path = os.environ.get("PATH", "")
    for extra in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if extra not in path.split(":"):
            path += f":{extra}"
    env = dict(os.environ, SLURM_CONF=str(conf_path), PATH=path)
    cluster = LocalSlurm(root=root, spec=spec, conf_path=conf_path, env=env,
                         node_names=[n.name for n in static],
                         _addr_prefix=f"127.{random.randint(2, 254)}.{random.randint(2, 254)}")
    started = time.monotonic()
    try:
        munge = _Daemon("munged", ["munged", "-F", "--force", f"--key-file={key}",
                                   f"--socket={site.munge_socket}", f"--pid-file={root / 'munge' / 'munged.pid'}",
                                   f"--log-file={root / 'munge' / 'munged.log'}", f"--seed-file={root / 'munge' / 'seed'}"],
                        root / "log" / "out-munged.log")
        cluster._daemons["munged"] = munge
        cluster._spawn(munge)
        cluster.wait_until(lambda: Path(site.munge_socket).exists(), timeout=timeout, what="munged socket", interval=0.02)
        if accounting:
            _start_accounting(cluster, timeout=max(timeout, 90))
        ctld = _Daemon("slurmctld", _namespace([], "", ["slurmctld", "-D", "-i"]), root / "log" / "out-slurmctld.log")
        cluster._daemons["slurmctld"] = ctld
        cluster._spawn(ctld)
        cluster.wait_until(lambda: cluster.run("scontrol", "ping", check=False, timeout=5).stdout.count("UP") > 0,
                           timeout=timeout, what="slurmctld answering", interval=0.05)
        for node in static:
            (root / "spool" / node.name).mkdir(exist_ok=True)
            daemon = _Daemon(node.name, _namespace([], "", ["slurmd", "-D", "-N", node.name]),
                             root / "log" / f"out-{node.name}.log")
            cluster._daemons[node.name] = daemon
            cluster._spawn(daemon)
        names = set(cluster.node_names)
        cluster.wait_until(lambda: all(cluster.nodes().get(n) == "idle" for n in names),
                           timeout=timeout, what=f"nodes {sorted(names)} idle", interval=0.05)
    except BaseException:
        cluster.stop()
        raise
    cluster.bringup_s = time.monotonic() - started
    return cluster


def _start_accounting(cluster: LocalSlurm, *, timeout: float) -> None:
    """MariaDB in the cluster's root (own datadir, unix socket, no TCP), slurmdbd on it, and the
    cluster, ``ACCOUNT`` and root as its user registered."""
    db = cluster.root / "db"
    socket_path = db / "mariadb.sock"
    # Durability settings a throwaway test database can do without (the machine is slow and shared).
    (db / "my.cnf").write_text("\n".join([
        "[mysqld]", f"datadir={db / 'data'}", f"socket={socket_path}", f"pid-file={db / 'mariadbd.pid'}",
        f"log-error={cluster.root / 'log' / 'mariadbd.log'}", "skip-networking", "user=root",
        "innodb_buffer_pool_size=32M", "innodb_flush_log_at_trx_commit=0", "innodb_doublewrite=0",
        "skip-log-bin", "", "[client]", f"socket={socket_path}", "",
    ]))
    defaults = f"--defaults-file={db / 'my.cnf'}"
    cluster.run("mariadb-install-db", defaults, "--auth-root-authentication-method=socket", "--skip-test-db",
                timeout=timeout)
    maria = _Daemon("mariadbd", ["mariadbd", defaults], cluster.root / "log" / "out-mariadbd.log")
    cluster._daemons["mariadbd"] = maria
    cluster._spawn(maria)
    cluster.wait_until(lambda: cluster.run("mariadb", defaults, "-e", "SELECT 1", check=False, timeout=5).returncode == 0,
                       timeout=timeout, what="mariadbd answering", interval=0.1)
    # slurmdbd's MariaDB client finds the socket through MYSQL_UNIX_PORT (StorageHost=localhost),
    # and logs in as the SlurmUser (root here) through unix_socket authentication, as on the head.
    daemon = _Daemon("slurmdbd", ["slurmdbd", "-D"], cluster.root / "log" / "out-slurmdbd.log",
                     env={"MYSQL_UNIX_PORT": str(socket_path)})
    cluster._daemons["slurmdbd"] = daemon
    cluster._spawn(daemon)
    cluster.wait_until(lambda: cluster.run("sacctmgr", "-n", "list", "cluster", timeout=10),
                       timeout=timeout, what="slurmdbd answering", interval=0.2)
    name = cluster.spec.cluster_name
    cluster.run("sacctmgr", "-i", "add", "cluster", name)
    cluster.run("sacctmgr", "-i", "add", "account", ACCOUNT, f"Cluster={name}", "Description=gpufleet tests",
                "Organization=gpufleet")
    cluster.run("sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}", f"Cluster={name}")


def _namespace(flags: list[str], setup: str, argv: list[str]) -> list[str]:
    """argv that runs ``argv`` under bash as PID 1 of a new PID namespace.

    bash stays PID 1 so it reaps the slurmstepd processes slurmd orphans; ``--kill-child`` ends
    the namespace if unshare itself dies.
    """
    body = (f"{setup} && " if setup else "") + '"$@" & wait $!'
    return ["unshare", "--pid", "--fork", "--mount-proc", *flags, "--kill-child",
            "/bin/bash", "-c", body, "gpufleet-node", *argv]


def _fake_gpu_devices(directory: Path, count: int) -> None:
    """GPU device files for GRES: character devices with /dev/null's numbers (the device boundary)."""
    directory.mkdir(exist_ok=True)
    for i in range(count):
        path = directory / f"nvidia{i}"
        if not path.exists():
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _field(text: str, key: str) -> str:
    match = re.search(rf"(?:^|\s){key}=(\S*)", text)
    return match.group(1) if match else ""

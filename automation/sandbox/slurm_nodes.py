"""Emulated instances as real Slurm nodes: every instance InService in one of the sandbox's Auto
Scaling groups runs a real ``slurmd`` dynamic node on this host, and an instance that leaves the
group takes its node down with it. With it the healer's whole loop runs on a local Slurm against
the emulated AWS (docs/heal.md).

    python -m gpufleet.automation.sandbox.slurm_nodes --inventory INV --stack training \\
        --group train-h100 --slurm-conf ROOT/etc/slurm.conf --gres-conf FILE \\
        --node-conf "Feature=train-h100 Gres=gpu:h100:8" --node-root DIR --spool-root DIR \\
        --addr-prefix 127.31.7 --boot-delay 5 --state-file F --max-s 3600

After ``--boot-delay`` seconds (the emulated instance's boot) a new instance joins as the
bootstrap joins it (lifecycle/bootstrap/steps/70-join.sh): node ``<group>-<instance id>``, the
cluster's slurm.conf and the group's gres.conf beside it, ``hold-node.sh`` registers it held, then
``slurmd -D -Z -N <node> --conf <node conf>`` runs as the child of PID 1 of a new PID, mount and
UTS namespace, with the node's own host name and loopback address: Slurm reaches every dynamic
node on one SlurmdPort, and with the cluster's ``NoInAddrAny`` each slurmd binds only its own
address, so any number of nodes (a held spare, the faulty node and its replacement) run side by
side. A job's own ``srun`` on such a node reads ``<node-root>/step-slurm.conf`` instead (see
``step_slurm_conf``: loopback connections all leave from 127.0.0.1). When the instance is no longer
InService in the group (terminated, detached), the namespace's init is SIGKILLed, so slurmd and
every job step on the node die together as on a terminated host, and what the unit's
ExecStopPost does is done: the hold reservation and the node record are deleted.

The group is read through the fleet's own access chain (``gpufleet.automation.aws``), every
``--poll`` seconds for at most ``--max-s`` seconds; SIGTERM (or the end of ``--max-s``) stops every
node this process started, by PID. The state file (JSON, replaced atomically after each change)
maps each node to its instance, address, PID and times, for tests and the benchmark to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gpufleet.lifecycle.slurm.hold import HOLD_SCRIPT, hold_reservation

LIFECYCLE = Path(__file__).resolve().parents[2] / "lifecycle"
MAX_POLL_S = 60.0
REGISTER_TIMEOUT_S = 60.0


@dataclass
class EmulatedNode:
    """One instance's Slurm node, as the state file reports it."""

    name: str
    """``<group>-<instance id>``, the bootstrap's name."""
    instance_id: str
    addr: str
    """Its loopback address (NodeAddr)."""
    seen_at: float
    """When the instance was first seen InService (epoch s)."""
    state: str = "booting"
    """booting (inside --boot-delay), up (slurmd started and registered), gone (killed)."""
    pid: int | None = None
    """PID of the ``unshare`` that holds the node's namespace."""
    up_at: float | None = None
    gone_at: float | None = None
    error: str = ""
    """Why the node could not be started (hold-node.sh or registration), if it could not."""


@dataclass(frozen=True, kw_only=True)
class NodeSite:
    """Where and how this host runs the emulated nodes."""

    group: str
    slurm_conf: Path
    gres_conf: Path
    node_conf: str
    """The ``slurmd -Z --conf`` string (feature and GRES) of the group's partition."""
    node_root: Path
    """Each node's own folder (slurm.conf, gres.conf, hosts, log) goes under it."""
    spool_root: Path
    """The cluster's SlurmdSpoolDir with ``%n`` taken off: <spool_root>/<node> is made."""
    addr_prefix: str
    """First three octets of the nodes' loopback addresses (127.x.y); hosts get .2, .3, ..."""
    boot_delay_s: float


STEP_CONF = "step-slurm.conf"
"""The slurm.conf a job on an emulated node reads (``SLURM_CONF``), written under ``--node-root``."""


def step_slurm_conf(text: str) -> str:
    """The cluster's slurm.conf for a job's own Slurm commands on an emulated node, less ``NoInAddrAny``.

    The nodes keep ``NoInAddrAny`` (their slurmd bind their own address, so several share one
    SlurmdPort). But on a real network a node's connections also leave from its address; here every
    connection leaves loopback from 127.0.0.1, so a job step's ``srun`` on the node would listen on
    the node's address while its slurmstepd answers the address the request came from (127.0.0.1),
    and the step never starts. A job that runs ``srun`` on an emulated node sets ``SLURM_CONF`` to
    this copy (its srun then listens on every address); slurmd and everything on the head keep the
    cluster's own.
    """
    out = []
    for line in text.splitlines():
        if line.startswith("CommunicationParameters="):
            kept = [p for p in line.split("=", 1)[1].split(",") if p.strip() and p.strip() != "NoInAddrAny"]
            line = f"CommunicationParameters={','.join(kept)}" if kept else "# CommunicationParameters: none for job steps"
        out.append(line)
    return "\n".join(out) + "\n"


def write_step_conf(site: NodeSite) -> Path:
    """``<node_root>/step-slurm.conf`` from the cluster's slurm.conf (see :func:`step_slurm_conf`)."""
    site.node_root.mkdir(parents=True, exist_ok=True)
    path = site.node_root / STEP_CONF
    tmp = path.with_name(f".{STEP_CONF}.tmp")
    tmp.write_text(step_slurm_conf(site.slurm_conf.read_text()))
    tmp.replace(path)
    return path


def namespace_argv(node: str, argv: list[str]) -> list[str]:
    """``argv`` under bash as PID 1 of new PID, mount and UTS namespaces, with the node's hostname
    and /etc/hosts. bash stays PID 1 so it reaps what slurmd orphans; --kill-child ends the
    namespace if unshare dies."""
    body = 'mount --bind "$GPUFLEET_NODE_HOSTS" /etc/hosts && hostname "$GPUFLEET_NODE" && "$@" & wait $!'
    return ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child", "/bin/bash", "-c", body,
            f"gpufleet-node-{node}", *argv]


class NodeHost:
    """Starts and stops the emulated instances' slurmd; ``sync`` once per poll."""

    def __init__(self, site: NodeSite, env: dict[str, str], state_file: Path | None = None,
                 clock: object = time.time) -> None:
        self.site = site
        self.env = env
        self.state_file = state_file
        self.clock = clock
        self.nodes: dict[str, EmulatedNode] = {}
        """Instance id -> its node (every instance seen, gone ones included)."""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        """Node name -> the ``unshare`` holding its namespace (nodes started by this process)."""
        self._next_host = 2

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator]

    def sync(self, in_service: set[str]) -> None:
        """Start the nodes of new instances whose boot is over, kill those of instances gone."""
        now = self._now()
        for iid in sorted(in_service - set(self.nodes)):
            if self._next_host > 254:
                raise RuntimeError(f"no loopback address left under {self.site.addr_prefix}")
            self.nodes[iid] = EmulatedNode(name=f"{self.site.group}-{iid}", instance_id=iid, seen_at=now,
                                           addr=f"{self.site.addr_prefix}.{self._next_host}")
            self._next_host += 1
        for iid, node in self.nodes.items():
            if node.state == "booting" and iid not in in_service:
                node.state, node.gone_at = "gone", now  # gone before it booted
            elif node.state == "booting" and now - node.seen_at >= self.site.boot_delay_s:
                self._start(node)
            elif node.state == "up" and iid not in in_service:
                self._kill(node)
        self.write_state()

    def stop(self) -> None:
        """Kill every node this process started."""
        for node in self.nodes.values():
            if node.state == "up":
                self._kill(node)
        self.write_state()

    def write_state(self) -> None:
        if self.state_file is None:
            return
        doc = {"group": self.site.group, "boot_delay_s": self.site.boot_delay_s,
               "nodes": [asdict(n) for n in self.nodes.values()]}
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.state_file)

    # -- one node ------------------------------------------------------------------------------
    def _scontrol(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["scontrol", *args], env=self.env, capture_output=True, text=True, timeout=30,
                              check=False)

    def _start(self, node: EmulatedNode) -> None:
        site = self.site
        folder = site.node_root / node.name
        folder.mkdir(parents=True, exist_ok=True)
        (site.spool_root / node.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(site.slurm_conf, folder / "slurm.conf")
        shutil.copy(site.gres_conf, folder / "gres.conf")
        (folder / "hosts").write_text(f"127.0.0.1 localhost\n{node.addr} {node.name}\n")
        hold = subprocess.run(["bash", str(LIFECYCLE / HOLD_SCRIPT), node.name, site.node_conf], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)
        if hold.returncode != 0:
            node.state, node.error = "gone", f"hold-node.sh: {hold.stderr.strip() or hold.stdout.strip()}"
            node.gone_at = self._now()
            return
        env = dict(self.env, SLURM_CONF=str(folder / "slurm.conf"), GPUFLEET_NODE_HOSTS=str(folder / "hosts"),
                   GPUFLEET_NODE=node.name)
        argv = namespace_argv(node.name, ["slurmd", "-D", "-Z", "-N", node.name, "--conf", site.node_conf])
        with (folder / "slurmd.out").open("ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[node.name] = proc
        node.pid = proc.pid
        # slurmctld records a dynamic node's address from its registration, which on loopback is
        # always 127.0.0.1; pin the node's own, as its real address would be (again once registered).
        self._scontrol("update", f"NodeName={node.name}", f"NodeAddr={node.addr}")
        deadline = time.monotonic() + REGISTER_TIMEOUT_S
        for _ in range(int(REGISTER_TIMEOUT_S / 0.1) + 1):
            if self._registered(node.name):
                break
            if proc.poll() is not None or time.monotonic() >= deadline:
                node.error = f"slurmd did not register (exit {proc.poll()}); log {folder / 'slurmd.out'}"
                self._kill(node)
                return
            time.sleep(0.1)
        self._scontrol("update", f"NodeName={node.name}", f"NodeAddr={node.addr}")
        node.state, node.up_at = "up", self._now()

    def _registered(self, name: str) -> bool:
        """slurmd has registered: the record hold-node.sh made is no longer FUTURE, and it answers."""
        shown = self._scontrol("-o", "show", "node", name)
        state = next((w[len("State="):] for w in shown.stdout.split() if w.startswith("State=")), "")
        return shown.returncode == 0 and bool(state) and not {"FUTURE", "NOT_RESPONDING"} & set(state.split("+"))

    def _kill(self, node: EmulatedNode) -> None:
        proc = self.procs.get(node.name)
        if proc is not None and proc.poll() is None:
            # SIGKILL to the namespace's init (unshare's child) makes the kernel kill the whole
            # namespace; killing unshare first would orphan the init instead.
            inner = _children(proc.pid)
            for pid in inner or [proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # The unit's ExecStopPost (70-join.sh): the node leaves the controller.
        self._scontrol("delete", f"reservation={hold_reservation(node.name)}")
        self._scontrol("delete", f"nodename={node.name}")
        node.state, node.gone_at = "gone", self._now()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def watch(host: NodeHost, read_in_service: object, poll_s: float, max_s: float,
          stopping: object = lambda: False) -> None:
    """Poll the group every ``poll_s`` for at most ``max_s`` seconds (or until ``stopping()``)."""
    deadline = time.monotonic() + max_s
    for _ in range(int(max_s / poll_s) + 2):
        if stopping() or time.monotonic() >= deadline:  # type: ignore[operator]
            break
        try:
            host.sync(set(read_in_service()))  # type: ignore[operator]
        except Exception as error:  # noqa: BLE001 - one failed poll (AWS, scontrol) must not end the host
            print(f"slurm_nodes: poll failed: {error}", file=sys.stderr, flush=True)
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    from gpufleet.automation.auto_scaling import read_group
    from gpufleet.automation.aws import AwsAccess
    from gpufleet.automation.inventory import load_inventory

    p = argparse.ArgumentParser(prog="python -m gpufleet.automation.sandbox.slurm_nodes",
                                description=__doc__.splitlines()[0])
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--stack", required=True, help="the consumer stack that holds the group")
    p.add_argument("--group", required=True, help="node group name (as the stack exports it)")
    p.add_argument("--slurm-conf", type=Path, required=True)
    p.add_argument("--gres-conf", type=Path, required=True, help="the group's gres.conf (the bundle's gres/<group>.conf)")
    p.add_argument("--node-conf", required=True, help="the slurmd -Z --conf string")
    p.add_argument("--node-root", type=Path, required=True)
    p.add_argument("--spool-root", type=Path, required=True)
    p.add_argument("--addr-prefix", required=True, help="127.x.y: the nodes get 127.x.y.2, .3, ...")
    p.add_argument("--boot-delay", type=float, default=0.0, help="seconds from InService to slurmd starting")
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--max-s", type=float, default=3600.0)
    p.add_argument("--state-file", type=Path)
    a = p.parse_args(argv)
    if not 0.05 <= a.poll <= MAX_POLL_S or not 0 <= a.boot_delay <= 3600 or not 0 < a.max_s <= 86400:
        p.error("--poll 0.05..60, --boot-delay 0..3600, --max-s up to 86400 seconds")
    if not a.addr_prefix.startswith("127.") or a.addr_prefix.count(".") != 2:
        p.error(f"--addr-prefix {a.addr_prefix!r}: expected 127.x.y")
    inventory = load_inventory(a.inventory)
    ref = next((g for g in inventory.node_groups if g.stack == a.stack and g.group.name == a.group), None)
    if ref is None:
        p.error(f"--stack {a.stack} --group {a.group}: no such node group in {a.inventory}")
    client = AwsAccess(inventory, operation="sandbox-nodes").client(a.stack, "autoscaling")
    site = NodeSite(group=a.group, slurm_conf=a.slurm_conf, gres_conf=a.gres_conf, node_conf=a.node_conf,
                    node_root=a.node_root, spool_root=a.spool_root, addr_prefix=a.addr_prefix,
                    boot_delay_s=a.boot_delay)
    write_step_conf(site)
    host = NodeHost(site, dict(os.environ), a.state_file)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    where = f"{a.stack}/{a.group}"
    try:
        watch(host, lambda: read_group(client, ref.group.asg_name, where).in_service, a.poll, a.max_s,
              lambda: bool(stop))
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

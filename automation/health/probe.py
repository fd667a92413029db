"""Probes: how the control plane runs the node health checks on one node and reads its report.

A ``NodeProbe`` runs ``python -m gpufleet.lifecycle.health --tiers ... --json`` on one node and returns
the parsed ``NodeReport``; a probe that cannot reach a node returns a report with one FAIL (check
``probe``), so one unreachable node fails the gate without stopping it.

    probe = SsmProbe(boto3_session)          # real nodes, through SSM Run Command
    probe = LocalProbe()                     # this host stands in for every node (the sandbox)
    probe = SlurmProbe(SlurmClient())        # srun onto the node (a held node: through its hold reservation)
    probe = KubernetesJobProbe(api, image=...)   # a Job pinned to the node (kube_probe.py)
    probe = EndpointProbe(url)               # an endpoint that runs the checks for the node (the sandbox)
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from gpufleet.lifecycle.health.results import (
    Action,
    CheckResult,
    NodeReport,
    Status,
    Tier,
)
from gpufleet.lifecycle.layout import INSTALL_DIR, NODE_PYTHON
from gpufleet.lifecycle.slurm.hold import hold_reservation

NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH the checks run with on a node (nvidia-smi, dcgmi, fi_info live there)."""


class NodeProbe(Protocol):
    """Runs the checks of ``tiers`` on one node and returns its report (never raises for the node's faults)."""

    max_parallel: int
    """How many nodes the gate may probe at once."""

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport: ...


def probe_failure(node: str, tiers: Sequence[Tier], detail: str) -> NodeReport:
    """The report of a node whose checks could not be run or read."""
    return NodeReport(node=node, tiers=tuple(tiers), results=(
        CheckResult(check="probe", status=Status.FAIL, detail=detail, action=Action.ISOLATE),))


def report_from_output(node: str, tiers: Sequence[Tier], stdout: str, what: str) -> NodeReport:
    """Parse the JSON report the entry point printed (from the first ``{`` of the output)."""
    start = stdout.find("{")
    if start < 0:
        return probe_failure(node, tiers, f"{what}: no report in the output")
    try:
        doc, _ = json.JSONDecoder().raw_decode(stdout[start:])  # text after the report is ignored
        report = NodeReport.from_dict(doc)
    except (ValueError, KeyError, TypeError) as err:
        return probe_failure(node, tiers, f"{what}: unreadable report: {err}")
    # The report names the node as the node sees itself; the gate names it by its id.
    return replace(report, node=node)


def entry_argv(tiers: Sequence[Tier], node: str, dcgm_level: int | None = None) -> list[str]:
    """The entry point's argv after the interpreter; ``dcgm_level``: the deep tier's DCGM level
    (the stack's ``healthGate.dcgmLevel``; None: the entry point's default)."""
    argv = ["-m", "gpufleet.lifecycle.health", "--tiers", ",".join(t.value for t in tiers), "--json", "--brief",
            "--node", node]
    if dcgm_level is not None and Tier.DEEP in tiers:
        argv += ["--dcgm-level", str(dcgm_level)]
    return argv


def pair_argv(master_port: int) -> list[str]:
    """The entry point's argv (after the interpreter) for a node of the newcomer + peer all-reduce:
    the deep tier without DCGM, two nodes, one rank per CPU host (every GPU of a GPU node); the
    caller adds ``--node``, ``--node-rank`` and ``--master-addr``."""
    return ["-m", "gpufleet.lifecycle.health", "--tiers", "deep", "--no-dcgm", "--json", "--brief",
            "--nnodes", "2", "--master-port", str(master_port), "--cpu-ranks", "1"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalProbe:
    """Runs the entry point in a subprocess on this host, once per node.

    This host is checked as it is (a CPU host unless it has GPUs): it stands in for nodes the
    automation cannot reach, as in the sandbox. ``env`` applies to every node, ``env_by_node``
    to one (e.g. a PATH whose fake ``nvidia-smi`` reports a double-bit ECC error on that node).
    """

    max_parallel = 1  # measurements on one host must not overlap

    def __init__(self, *, env: Mapping[str, str] | None = None,
                 env_by_node: Mapping[str, Mapping[str, str]] | None = None, python: str = sys.executable,
                 timeout_s: float = 900.0, dcgm_level: int | None = None, peers: Sequence[Any] = ()) -> None:
        self.dcgm_level = dcgm_level
        self.peers = tuple(peers)
        self.env = {"GPUFLEET_INSTANCE_TYPE": "none", **(env or {})}
        self.env_by_node = {k: dict(v) for k, v in (env_by_node or {}).items()}
        self.python = python
        self.timeout_s = timeout_s

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport:
        env = {**os.environ, **self.env, **self.env_by_node.get(node, {})}
        try:
            done = subprocess.run([self.python, *entry_argv(tiers, node, self.dcgm_level)], capture_output=True, text=True,
                                  env=env, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return probe_failure(node, tiers, f"health checks did not finish in {self.timeout_s:.0f} s")
        if done.returncode not in (0, 1):
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            return probe_failure(node, tiers, f"health checks exited {done.returncode}: {last}")
        return report_from_output(node, tiers, done.stdout, "local health checks")

    def peer_candidates(self, nodes: Sequence[str]) -> tuple[Any, ...]:
        """The ``PeerCandidate``s it was given (this host has no orchestrator to ask)."""
        return self.peers

    def allreduce_with(self, node: str, peer: str) -> NodeReport:
        """The deep tier's two-node all-reduce, both nodes' entry points on this host (node rank 0 =
        ``node``, rendezvous on 127.0.0.1); the newcomer's report."""
        port = free_port()
        procs = []
        for rank, name in enumerate((node, peer)):
            env = {**os.environ, **self.env, **self.env_by_node.get(name, {})}
            argv = [*pair_argv(port), "--node", name, "--node-rank", str(rank), "--master-addr", "127.0.0.1"]
            procs.append(subprocess.Popen([self.python, *argv], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = []
        try:
            for proc in procs:
                outs.append(proc.communicate(timeout=self.timeout_s))
        except subprocess.TimeoutExpired:
            return probe_failure(node, (Tier.DEEP,), f"all-reduce with {peer} did not finish in {self.timeout_s:.0f} s")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        (stdout, stderr), code = outs[0], procs[0].returncode
        if code not in (0, 1):
            last = (stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            return probe_failure(node, (Tier.DEEP,), f"all-reduce with {peer} exited {code}: {last}")
        return report_from_output(node, (Tier.DEEP,), stdout, f"all-reduce with {peer}")


SSM_TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Cancelling", "Undeliverable", "Terminated",
                "DeliveryTimedOut", "ExecutionTimedOut", "InvalidPlatform", "AccessDenied"}


class SsmProbe:
    """Runs the entry point on an EC2 instance through SSM Run Command (AWS-RunShellScript).

    The node needs the SSM agent, an instance profile allowing SSM, the node's packages in
    ``python``'s environment (the node image) and the lifecycle bundle under ``install_dir`` (the
    user data puts it there as ``gpufleet/lifecycle``).
    """

    max_parallel = 16

    def __init__(self, session: Any, *, region: str | None = None,
                 python: str = NODE_PYTHON, install_dir: str = INSTALL_DIR, timeout_s: float = 1800.0,
                 poll_s: float = 5.0, sleep: Callable[[float], None] = time.sleep, dcgm_level: int | None = None) -> None:
        self.dcgm_level = dcgm_level
        self.ssm = session.client("ssm", region_name=region) if region else session.client("ssm")
        self.python = python
        self.install_dir = install_dir
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.sleep = sleep

    def command(self, node: str, tiers: Sequence[Tier]) -> str:
        return " ".join([f"PYTHONPATH={shlex.quote(self.install_dir)}", shlex.quote(self.python),
                         *map(shlex.quote, entry_argv(tiers, node, self.dcgm_level))])

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            sent = self.ssm.send_command(
                InstanceIds=[node], DocumentName="AWS-RunShellScript", Comment="gpufleet health gate",
                Parameters={"commands": [self.command(node, tiers)], "executionTimeout": [str(int(self.timeout_s))]},
                TimeoutSeconds=60)
            command_id = sent["Command"]["CommandId"]
            deadline = time.monotonic() + self.timeout_s + 60
            while True:
                try:
                    inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=node)
                except ClientError as err:
                    # Right after send_command the invocation may not exist yet.
                    if err.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                        raise
                    inv = {"Status": "Pending"}
                if inv.get("Status") in SSM_TERMINAL:
                    break
                if time.monotonic() > deadline:
                    return probe_failure(node, tiers, f"SSM command {command_id} still {inv.get('Status')} at the deadline")
                self.sleep(self.poll_s)
        except (ClientError, BotoCoreError) as err:
            return probe_failure(node, tiers, f"SSM: {err}")
        what = f"SSM command {command_id} {inv['Status']}"
        if inv["Status"] != "Success" and "{" not in inv.get("StandardOutputContent", ""):
            stderr = (inv.get("StandardErrorContent", "").strip().splitlines() or [""])[-1][:200]
            return probe_failure(node, tiers, f"{what}{': ' + stderr if stderr else ''}")
        return report_from_output(node, tiers, inv.get("StandardOutputContent", ""), what)


class SlurmProbe:
    """Runs the entry point on the node itself with ``srun``, as one exclusive task with the node's GRES.

    A node held by the GPU nodes' bootstrap (lifecycle/slurm/hold-node.sh) is reachable only
    through its ``gpufleet-unverified-<node>`` reservation, which the probe uses; an admitted node
    is probed through its partition and waits at most ``immediate_s`` for its running jobs.
    Nothing of the caller's environment travels (``--export=NONE``): the checks get ``NODE_PATH``,
    the bundle's PYTHONPATH and ``node_env`` (e.g. ``GPUFLEET_INSTANCE_TYPE`` where instance
    metadata is not reachable). Nodes are named by instance id or Slurm node name.
    """

    max_parallel = 8
    JOB_NAME = "gpufleet-health-gate"

    def __init__(self, slurm: Any, *, python: str = NODE_PYTHON, install_dir: str = INSTALL_DIR,
                 node_env: Mapping[str, str] | None = None, timeout_s: float = 1800.0, immediate_s: int = 120,
                 dcgm_level: int | None = None, pair_port: int = 29512) -> None:
        self.slurm = slurm
        self.pair_port = pair_port
        self.dcgm_level = dcgm_level
        self.python = python
        self.install_dir = install_dir
        self.node_env = dict(node_env or {})
        self.timeout_s = timeout_s
        self.immediate_s = immediate_s

    def srun_argv(self, node: Any, tiers: Sequence[Tier], name: str, reservations: set[str]) -> list[str]:
        argv = [f"--job-name={self.JOB_NAME}", f"--nodelist={node.name}", "--nodes=1", "--ntasks=1", "--exclusive",
                "--export=NONE", f"--immediate={self.immediate_s}", f"--time={max(1, int(self.timeout_s // 60))}"]
        if hold_reservation(node.name) in reservations:
            argv.append(f"--reservation={hold_reservation(node.name)}")
        if node.partitions:
            argv.append(f"--partition={node.partitions[0]}")
        if node.gres:
            argv.append(f"--gres={node.gres}")
        env = {"PATH": NODE_PATH, "PYTHONPATH": self.install_dir, **self.node_env}
        return [*argv, "/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), self.python, *entry_argv(tiers, name, self.dcgm_level)]

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport:
        from gpufleet.infra.errors import SlurmError

        try:
            target = next((n for n in self.slurm.nodes() if node == n.name or node in n.instance_ids), None)
            if target is None:
                return probe_failure(node, tiers, "no Slurm node for it (not registered yet?)")
            reservations = {r["ReservationName"] for r in self.slurm.reservations()}
            done = self.slurm.srun(*self.srun_argv(target, tiers, node, reservations), timeout_s=self.timeout_s + 120)
        except SlurmError as err:
            return probe_failure(node, tiers, f"srun: {err.message}")
        what = f"srun on {target.name}"
        if done.returncode not in (0, 1) and "{" not in done.stdout:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            return probe_failure(node, tiers, f"{what} exited {done.returncode}: {last}")
        return report_from_output(node, tiers, done.stdout, what)

    def peer_candidates(self, nodes: Sequence[str]) -> list[Any]:
        """Every Slurm node as a ``PeerCandidate`` (partition, feature = node group, hold, state)."""
        from gpufleet.automation.health import slurm_pair

        return slurm_pair.candidates(self.slurm.nodes(), {r["ReservationName"] for r in self.slurm.reservations()})

    def allreduce_with(self, node: str, peer: str) -> NodeReport:
        """The two-node all-reduce in one srun over ``node`` (in its hold reservation) and ``peer``."""
        from gpufleet.automation.health import slurm_pair

        return slurm_pair.run_pair(self, node, peer, pair_argv(self.pair_port))


class EndpointProbe:
    """Asks an HTTP endpoint to run the entry point for a node: ``POST {"instanceId", "argv"}``,
    answered ``{"returncode", "stdout", "stderr"}``. The sandbox's emulated instances answer it
    (``/_gpufleet/probe``: the bundle's health code, run for that instance's type and identity)."""

    max_parallel = 1  # one host runs every emulated node's checks

    def __init__(self, url: str, *, timeout_s: float = 900.0, dcgm_level: int | None = None) -> None:
        self.url = url
        self.dcgm_level = dcgm_level
        self.timeout_s = timeout_s

    def probe(self, node: str, tiers: Sequence[Tier]) -> NodeReport:
        import urllib.error
        import urllib.request

        body = json.dumps({"instanceId": node, "argv": entry_argv(tiers, node, self.dcgm_level)[2:]}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                doc = json.loads(answer.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:200]
            return probe_failure(node, tiers, f"{self.url}: {err.code} {detail}")
        except (OSError, ValueError) as err:
            return probe_failure(node, tiers, f"{self.url}: {err}")
        what = f"checks for {node} at {self.url}"
        if doc.get("returncode") not in (0, 1):
            last = (str(doc.get("stderr", "")).strip().splitlines() or ["(no output)"])[-1][:200]
            return probe_failure(node, tiers, f"{what} exited {doc.get('returncode')}: {last}")
        return report_from_output(node, tiers, str(doc.get("stdout", "")), what)

"""The integrated sandbox for Slurm: the healer's whole loop on a real local Slurm against the
emulated AWS, for tests/automation/heal/test_heal_integrated.py and bench/heal.py.

- The sandbox (moto) holds the fleet; the training stack's first Slurm group is sized to one
  instance (the job's node), plus the pool's hot spares when ``start(spares=N)`` asks (the healer
  launches, gates and holds them). ``gpufleet.automation.sandbox.slurm_nodes`` runs a real
  ``slurmd`` dynamic node for each instance InService in that group (held by hold-node.sh, own PID
  namespace, own loopback address) and kills it when the instance leaves.
- Each node runs the bundle's Slurm health hook (HealthCheckProgram) over fake ``nvidia-smi`` /
  ``fi_info`` / ``dmesg`` chosen by its ``health.d/<node>.env``: the fault is injected at that
  device boundary (a GPU whose row remapping failed), and the hook drains the node as on AWS.
- The healer is ``heal_pass`` in a bounded loop (what ``gpufleet heal --loop`` runs), its gate
  an ``srun`` of the node's health code through the newcomer's hold reservation.
- The job is the reference job (lifecycle/jobs/gpt_reference.py) submitted by ``gpufleet launch``,
  checkpointing every ``ckpt_every`` steps; its JSON events (``ts`` in epoch seconds) say when it
  trained, from which checkpoint it resumed and how far it had got.

Usage (see the tests and the bench)::

    with integrated_sandbox(sandbox, make_local_slurm, prefix="gh", boot_delay_s=5) as isb:
        isb.start()
        job = isb.launch_job(ckpt_every=5, step_sleep=0.2)
        trial = isb.fault_and_recover(timeout_s=300)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.automation.auto_scaling import read_group
from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.heal.decide import HealBudget
from gpufleet.automation.heal.execute import Limits
from gpufleet.automation.heal.service import HealArgs, heal_ops, heal_pass, slurm_groups
from gpufleet.automation.heal.spares import is_spare
from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.probe import NODE_PATH, SlurmProbe
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.jobs.launch import launch
from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.automation.rebalance.service import cached_clients
from gpufleet.automation.sandbox.slurm_nodes import STEP_CONF
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.slurm.conf import render_node_gres_conf
from tests.lifecycle.health.fixture_runner import fake_tools
from tests.lifecycle.job_log import job_events
from tests.lifecycle.node_image import install_bundle
from tests.lifecycle.torchrun_job import TORCHRUN, free_port

REPO = Path(__file__).resolve().parent.parent
HOOK_NAME = "slurm_healthcheck.sh"
HEALTHY = "nvidia_smi_q_h100x8_healthy.xml"
FAULTY = "nvidia_smi_q_h100x8_remap_failed.xml"
"""One GPU whose row remapping failed: the hook drains with ``ecc: ... row remapping failed``, the
decision table's row_remap_failure (as Xid 64): replace."""


@dataclass(frozen=True)
class NodeHook:
    """The bundle's health hook as a node has it, with per-node device fixtures."""

    bin_dir: Path
    healthy: Path
    faulty: Path

    def give(self, node: str, tools: Path) -> None:
        (self.bin_dir / "health.d" / f"{node}.env").write_text(f"PATH={tools}:$PATH\n")


def install_hook(work: Path, slurm_root: Path) -> NodeHook:
    """The bundle the training stack uploads, with health.env (every node healthy by default)."""
    bundle = install_bundle(plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml")).files,
                            work / "opt" / "gpufleet")
    bin_dir = bundle / "health"
    (bin_dir / HOOK_NAME).chmod(0o755)
    (bin_dir / "health.d").mkdir(exist_ok=True)
    healthy = fake_tools(work / "tools-healthy", HEALTHY)
    faulty = fake_tools(work / "tools-faulty", FAULTY)
    # The dev interpreter stands in for the node's venv (tests/lifecycle/node_image.py builds that
    # one for the hook's own tests); the bundle is first on PYTHONPATH all the same.
    (bin_dir / "health.env").write_text(
        f"GPUFLEET_PYTHON={sys.executable}\nSLURM_CONF={slurm_root / 'etc' / 'slurm.conf'}\n"
        "GPUFLEET_INSTANCE_TYPE=p5.48xlarge\nGPUFLEET_NO_IMDS=1\nGPUFLEET_HEALTH_DISK_PATHS=/tmp\n"
        f"PATH={healthy}:$PATH\n")
    return NodeHook(bin_dir=bin_dir, healthy=healthy, faulty=faulty)


@dataclass
class Trial:
    """One fault and the recovery from it; times are seconds after the fault."""

    fault_at: float
    """Epoch s the faulty device fixture was put on the node."""
    node: str
    instance_id: str
    drained_s: float | None = None
    """The node's hook drained it (first seen by polling)."""
    replacement: str = ""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    """(s after the fault, what happened), sorted."""
    resumed_from: int | None = None
    last_step_before: int | None = None
    first_step_after_s: float | None = None
    """The job's first training step after its resume."""
    admitted_s: float | None = None
    """The healer admitted the newcomer (its operation's JOINED)."""
    running_again_s: float | None = None
    """Slurm ran the requeued job again (first seen by polling)."""
    running_on: str = ""
    swapped_in: str = ""
    """The held spare the healer admitted in the faulty node's place (empty: a replacement booted)."""
    spare_admitted_s: float | None = None
    ops_before: frozenset[str] = frozenset()
    """Heal operations journaled before the fault (not this fault's)."""
    marks: dict[str, float] = field(default_factory=dict)
    """s after the fault of each step: ``drained``, the operation's states (LOCKED, ..., DONE) and
    intents (``admit_spare``, ``terminate``), the newcomer's ``seen`` (InService at the node host)
    and ``up`` (slurmd registered), the job's ``running`` (again) and ``first_step``."""

    @property
    def work_lost_steps(self) -> int | None:
        if self.resumed_from is None or self.last_step_before is None:
            return None
        return self.last_step_before - self.resumed_from


class HealLoop:
    """``heal_pass`` every ``interval_s`` in a thread, as ``gpufleet heal --loop`` runs it (bounded)."""

    def __init__(self, run_pass: Any, interval_s: float = 1.0, max_s: float = 1800.0) -> None:
        self.run_pass = run_pass
        self.interval_s = interval_s
        self.max_s = max_s
        self.reports: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heal-loop", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.reports.append(self.run_pass())
            except Exception as error:  # noqa: BLE001 - reported by the caller, the loop goes on
                self.errors.append(error)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> HealLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=300)


class IntegratedSandbox:
    """The sandbox's Slurm group as real slurmd nodes, the healer looping, the reference job."""

    def __init__(self, *, inventory: Path, slurm: Any, hook: NodeHook, work: Path, boot_delay_s: float,
                 heal_interval_s: float = 1.0) -> None:
        self.inventory_path = inventory
        self.inventory = load_inventory(inventory)
        self.clients = cached_clients(AwsAccess(self.inventory, operation="heal-sandbox"))
        self.ref = slurm_groups(self.inventory)[0]
        self.asg = self.clients(self.ref.stack, "autoscaling")
        self.harness = slurm
        self.slurm = SlurmClient(env=slurm.env)
        self.hook = hook
        self.work = work
        self.boot_delay_s = boot_delay_s
        self.heal_interval_s = heal_interval_s
        self.journal = Journal(self.clients(self.inventory.platform_stack, "dynamodb"), self.inventory.journal_table)
        self.state_file = work / "slurm-nodes.json"
        self.watcher: subprocess.Popen[bytes] | None = None
        self.job_id: int | None = None
        self.job_log: Path | None = None
        self.ckpt_dir = work / "ckpt"
        self.probe = SlurmProbe(self.slurm, python=sys.executable, install_dir=str(hook.bin_dir.parent.parent.parent),
                                node_env={"PATH": f"{hook.healthy}:{NODE_PATH}", "GPUFLEET_INSTANCE_TYPE": "p5.48xlarge",
                                          "GPUFLEET_NO_IMDS": "1", "GPUFLEET_HEALTH_DISK_PATHS": "/tmp"},
                                timeout_s=300)
        self.budget = HealBudget(per_group_per_hour=20, per_pool_per_hour=20)
        self.limits = Limits(drain_timeout_s=120, replace_timeout_s=120, join_timeout_s=120, poll_s=0.25)

    # -- the fleet -----------------------------------------------------------------------------
    def in_service(self) -> list[str]:
        return sorted(read_group(self.asg, self.ref.group.asg_name, self.ref.group.asg_name).in_service)

    def nodes_state(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.state_file.read_text())["nodes"]
        except (OSError, ValueError, KeyError):
            return []

    def node_of(self, iid: str) -> dict[str, Any] | None:
        return next((n for n in self.nodes_state() if n["instance_id"] == iid), None)

    def start(self, timeout_s: float = 180, spares: int = 0) -> IntegratedSandbox:
        """Size the group to one instance, start the node host, gate and admit the first node; with
        ``spares``, set the pool's and let the healer launch, gate and hold them."""
        self.asg.set_desired_capacity(AutoScalingGroupName=self.ref.group.asg_name, DesiredCapacity=1,
                                      HonorCooldown=False)
        self.harness.wait_until(lambda: len(self.in_service()) == 1, timeout=60, what="the group at one instance")
        part = self.harness.spec.partition(self.ref.group.name)
        gres = self.work / "gres.conf"
        gres.write_text(render_node_gres_conf(part, device_dir=str(self.harness.root / "dev")))
        a, b = os.getpid() % 200 + 20, int(time.time()) % 200 + 20
        argv = [sys.executable, "-m", "gpufleet.automation.sandbox.slurm_nodes", "--inventory", str(self.inventory_path),
                "--stack", self.ref.stack, "--group", self.ref.group.name, "--slurm-conf", str(self.harness.conf_path),
                "--gres-conf", str(gres), "--node-conf", part.dynamic_node_conf(),
                "--node-root", str(self.harness.root / "nodes"), "--spool-root", str(self.harness.root / "spool"),
                "--addr-prefix", f"127.{a}.{b}", "--boot-delay", str(self.boot_delay_s), "--poll", "0.25",
                "--max-s", "3600", "--state-file", str(self.state_file)]
        env = {**os.environ, **self.harness.env}
        with (self.work / "slurm-nodes.log").open("ab") as log:
            self.watcher = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                            stdin=subprocess.DEVNULL)
        (iid,) = self.in_service()
        node = self.harness.wait_until(lambda: (n := self.node_of(iid)) and n["state"] == "up" and n,
                                       timeout=timeout_s, what=f"the node of {iid} up", interval=0.2)
        report = gate([iid], self.probe, ("quick",))
        if not report.ok:
            raise RuntimeError(f"the first node failed its gate: {report.summary}")
        SlurmOrchestrator(self.slurm).admit([iid])
        self.first_node = node["name"]
        if spares:
            self.set_spares(spares)
            self.wait_spares(spares, timeout_s, run_passes=True)
        return self

    def set_spares(self, n: int) -> None:
        """The pool's ``spares: n``, as the inventory says it once the platform stack does (the
        healer reads the inventory each pass)."""
        doc = json.loads(self.inventory_path.read_text())
        for stack in doc["stacks"].values():
            for pool in stack.get("pools") or ():
                if pool["name"] == self.ref.group.pool:
                    pool["spares"] = n
        tmp = self.inventory_path.with_name(f".{self.inventory_path.name}.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.inventory_path)
        self.inventory = load_inventory(self.inventory_path)

    def spares_held(self) -> list[str]:
        """The group's Slurm nodes held as hot spares."""
        return sorted(n.name for n in self.slurm.nodes() if is_spare(n) and n.name.startswith(f"{self.ref.group.name}-"))

    def wait_spares(self, n: int, timeout_s: float, *, run_passes: bool = False) -> list[str]:
        """Until the group holds ``n`` spares; ``run_passes``: run the healer's passes here (no
        HealLoop running)."""
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.2) + 1):
            held = self.spares_held()
            if len(held) >= n:
                return held
            if time.monotonic() >= deadline:
                break
            if run_passes:
                self.heal_once()
            else:
                time.sleep(0.2)
        raise TimeoutError(f"{n} hot spare(s) not held after {timeout_s:.0f} s (held: {self.spares_held()})")

    def stop(self) -> None:
        if self.job_id is not None:
            self.harness.run("scancel", str(self.job_id), check=False)
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait(timeout=10)

    def __enter__(self) -> IntegratedSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the healer ----------------------------------------------------------------------------
    def heal_once(self) -> Any:
        args = HealArgs(inventory=self.inventory_path, probe="orchestrator", budget=self.budget, limits=self.limits)
        return heal_pass(args, clients=self.clients, slurm=self.slurm, probes=lambda stack: self.probe,
                         journal=self.journal)

    def healer(self) -> HealLoop:
        return HealLoop(self.heal_once, self.heal_interval_s)

    # -- the job -------------------------------------------------------------------------------
    def launch_job(self, *, ckpt_every: int = 5, step_sleep: float = 0.2, steps: int = 100_000) -> int:
        job_file = self.work / "job.yaml"
        job_file.write_text(yaml.safe_dump({
            "name": "gpt-heal", "backend": "slurm", "partition": self.ref.group.name, "nodes": 1,
            "gpus_per_node": 0, "procs_per_node": 1, "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference",
            "args": ["--steps", str(steps), "--keep-last", "2", "--seed", "7", "--step-sleep", str(step_sleep),
                     "--progress-dir", str(self.work / "progress")],
            "checkpoint_dir": str(self.ckpt_dir), "checkpoint_interval": ckpt_every, "max_restarts": 0,
            "rdzv_port": free_port(), "torchrun": str(TORCHRUN), "workdir": str(self.work),
            # The job's own srun on an emulated node reads the step copy of slurm.conf (slurm_nodes.py).
            "env": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                    "SLURM_CONF": str(self.harness.root / "nodes" / STEP_CONF)},
        }))
        result = launch(job_file, dry_run=False, slurm=self.slurm)
        self.job_id = int(result.job_id)
        self.job_log = self.work / f"gpt-heal-{self.job_id}.out"
        return self.job_id

    def job_events(self) -> list[dict[str, Any]]:
        assert self.job_log is not None
        return job_events(self.job_log) if self.job_log.exists() else []

    def wait_checkpoint_after(self, ts: float, timeout_s: float) -> dict[str, Any]:
        """The first checkpoint the job committed after ``ts`` (epoch s)."""
        return self.harness.wait_until(
            lambda: next((e for e in self.job_events() if e["event_type"] == "checkpoint" and e["ts"] > ts), None),
            timeout=timeout_s, what="a checkpoint committed", interval=0.2)

    # -- one fault -----------------------------------------------------------------------------
    def running_node(self) -> str:
        assert self.job_id is not None
        job = self.harness.wait_until(lambda: (j := self.harness.job(self.job_id)).state == "RUNNING" and j,
                                      timeout=120, what="the job running")
        return job.nodes

    def fault_and_recover(self, timeout_s: float = 300) -> Trial:
        """Inject the fault on the job's node just after a checkpoint; return once the job trained
        again (its first step after resuming), with the timeline."""
        node = self.running_node()
        iid = next(n["instance_id"] for n in self.nodes_state() if n["name"] == node)
        # Land the fault between checkpoints: a few steps past the newest one.
        ckpt = self.wait_checkpoint_after(time.time(), timeout_s=120)
        self.harness.wait_until(lambda: any(e["event_type"] == "step" and e["step"] >= ckpt["step"] + 2
                                            for e in self.job_events()), timeout=60, what="steps past the checkpoint")
        ops_before = {op.op_id for op in heal_ops(self.journal)}
        fault_at = time.time()
        self.hook.give(node, self.hook.faulty)
        trial = Trial(fault_at=fault_at, node=node, instance_id=iid, ops_before=frozenset(ops_before))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if trial.drained_s is None:
                info = next((n for n in self.slurm.nodes() if n.name == node), None)
                if info is not None and "DRAIN" in info.state.upper():
                    trial.drained_s = time.time() - fault_at
            if trial.running_again_s is None:
                job = self.harness.job(self.job_id)
                if job.state == "RUNNING" and job.restarts >= 1 and job.nodes != node:
                    trial.running_again_s, trial.running_on = time.time() - fault_at, job.nodes
            evs = self.job_events()
            starts = [e for e in evs if e["event_type"] == "start" and e["ts"] > fault_at]
            if starts:
                after = [e for e in evs if e["event_type"] == "step" and e["ts"] > starts[0]["ts"]]
                if after:
                    trial.resumed_from = starts[0]["resumed_from"]
                    trial.first_step_after_s = after[0]["ts"] - fault_at
                    before = [e["step"] for e in evs if e["event_type"] == "step" and e["ts"] < starts[0]["ts"]]
                    trial.last_step_before = max(before) if before else None
                    break
            time.sleep(0.2)
        self.refresh_timeline(trial)
        return trial

    def refresh_timeline(self, trial: Trial) -> None:
        """The trial's timeline from the journal, the node host and the job (again once the
        background part of a swap is over)."""
        t0 = trial.fault_at
        line = [(0.0, f"fault: row remapping failed on {trial.node}")]
        if trial.drained_s is not None:
            trial.marks["drained"] = trial.drained_s
            line.append((trial.drained_s, f"{trial.node} drained by its health hook"))
        for op in heal_ops(self.journal):
            if op.op_id in trial.ops_before:
                continue
            op = self.journal.load(op.op_id) or op
            if op.body.get("action") != "replace":
                continue  # a spare's top-up launched alongside: not this fault's
            trial.replacement = ",".join(op.body.get("replaced_by") or ())
            trial.swapped_in = op.body.get("swap_with") or ""
            for e in self.journal.events(op.op_id):
                if e.event_type == "intent" and e.step == "admit_spare":
                    trial.spare_admitted_s = e.at_ns / 1e9 - t0
                    line.append((trial.spare_admitted_s, f"heal: spare {trial.swapped_in} admitted"))
                elif e.event_type == "intent" and e.step == "terminate":
                    line.append((e.at_ns / 1e9 - t0, f"heal: terminate {trial.instance_id}"))
                if e.event_type == "intent":
                    trial.marks.setdefault(e.step, e.at_ns / 1e9 - t0)
                if e.event_type == "transition":
                    trial.marks[str(e.state)] = e.at_ns / 1e9 - t0
                    line.append((e.at_ns / 1e9 - t0, f"heal {op.op_id}: {e.state}"))
                    if e.state == "JOINED":
                        trial.admitted_s = e.at_ns / 1e9 - t0
        for n in self.nodes_state():
            if n["instance_id"] == trial.instance_id and n.get("gone_at"):
                line.append((n["gone_at"] - t0, f"{n['name']}: slurmd killed (instance terminated)"))
            if trial.replacement and n["instance_id"] in trial.replacement.split(","):
                line.append((n["seen_at"] - t0, f"{n['instance_id']} InService (seen by the node host)"))
                trial.marks["seen"] = n["seen_at"] - t0
                if n.get("up_at"):
                    trial.marks["up"] = n["up_at"] - t0
                    line.append((n["up_at"] - t0, f"{n['name']}: slurmd registered held"))
        evs = self.job_events()
        for e in evs:
            if e["ts"] <= t0:
                continue
            if e["event_type"] == "stopping":
                line.append((e["ts"] - t0, f"job: saved at step {e['step']}, stopping for the requeue"))
            elif e["event_type"] == "start":
                line.append((e["ts"] - t0, f"job: started again, resumed from step {e['resumed_from']}"))
        if trial.running_again_s is not None:
            trial.marks["running"] = trial.running_again_s
            line.append((trial.running_again_s, f"job: RUNNING on {trial.running_on}"))
        if trial.first_step_after_s is not None:
            trial.marks["first_step"] = trial.first_step_after_s
            line.append((trial.first_step_after_s, "job: first training step after the resume"))
        trial.timeline = sorted(line)


def integrated_sandbox(sandbox: Any, make_local_slurm: Any, *, prefix: str, boot_delay_s: float) -> IntegratedSandbox:
    """The integrated sandbox on the sandbox's inventory (a test's ``sandbox`` and
    ``make_local_slurm`` fixtures): a fresh local Slurm of no static node under a short root in /tmp
    named ``prefix...`` (node names carry the instance id: Slurm's socket paths must stay short), the
    bundle's health hook run on every node every 2 s, and the work directory inside that root (kept
    with the cluster's logs when the test fails). Not started: ``with ... as isb: isb.start()``."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    work = root / "work"
    hook = install_hook(work, root)
    slurm = make_local_slurm(num_nodes=0, root=root, health_check_program=str(hook.bin_dir / HOOK_NAME),
                             health_check_interval_s=2)
    return IntegratedSandbox(inventory=sandbox.inventory, slurm=slurm, hook=hook, work=work, boot_delay_s=boot_delay_s)

"""The sandbox's emulated instances answer the health probe: ``POST /_gpufleet/probe``.

moto launches instances that run nothing. When the gate probes one (``{"instanceId", "argv"}``,
from gpufleet.automation.health.probe.EndpointProbe), this module runs the node's own health code
for it, as a local subprocess: ``python -m gpufleet.lifecycle.health ARGV`` over the bundle the
stack uploads (``bundle_files``, installed once into the sandbox's own directory and put on
PYTHONPATH), with that instance's identity in its environment (its type, its id as the node name)
and its devices emulated at the device boundary, as moto emulates the API: ``nvidia-smi``,
``fi_info``, ``dcgmi`` and ``dmesg`` print recordings of a healthy node of the type's GPU model and EFA count
(``devices/``). A type without recordings reports what it finds on this host: no GPUs, a FAIL.
Only a live (pending or running) instance is probed; any other id answers 404.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from gpufleet.lifecycle.bootstrap.bundle import bundle_files
from gpufleet.lifecycle.instance_types import UnknownInstanceTypeError, lookup
from gpufleet.lifecycle.layout import PACKAGE_PATH

DEVICES = Path(__file__).resolve().parent / "devices"
RECORDINGS = {("H100", 8): "nvidia-smi.H100x8.xml"}
"""(GPU model, GPUs) -> a healthy node's ``nvidia-smi -q -x``."""
DCGM_RECORDING = "dcgmi.diag-pass.json"
"""``dcgmi diag -r 3 -j`` of a healthy node (the deep tier), for every type with a GPU recording."""
EFA_RECORDINGS = {32: "fi_info.efa32.txt"}
"""EFA interfaces -> a healthy node's ``fi_info -p efa``."""
LIVE = ("pending", "running")
TIMEOUT_S = 900.0


class UnknownInstance(LookupError):
    """No live emulated instance has this id."""


def find_instance(instance_id: str) -> tuple[str, str]:
    """(account, instance type) of a live emulated instance."""
    from moto.ec2.models import ec2_backends

    for account in list(ec2_backends.keys()):
        for backend in list(ec2_backends[account].values()):
            instance = backend.instances.get(instance_id) if hasattr(backend, "instances") else None
            if instance is None:
                instance = next((i for i in backend.all_instances() if i.id == instance_id), None)
            if instance is not None and instance.state in LIVE:
                return account, instance.instance_type
    raise UnknownInstance(instance_id)


class NodeProbeRunner:
    """Runs the health entry point for emulated instances (one at a time: they share this host)."""

    def __init__(self, root: Path | None = None, python: str = sys.executable) -> None:
        self._root = root
        self.python = python
        self._lock = threading.Lock()
        self._installed: Path | None = None
        self.runs: list[dict[str, Any]] = []
        """Every probe answered: the instance, its type and account, the exit status, the output."""

    @property
    def root(self) -> Path:
        """Where the bundle, the device tools and each node's home live (made on the first probe)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="gpufleet-sandbox-nodes-"))
        return self._root

    def remove(self) -> None:
        """Delete what the probes left on this host (the server's exit)."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def install_dir(self) -> Path:
        """The bundle as the user data leaves it: ``<install dir>/gpufleet/lifecycle/...`` (built once)."""
        if self._installed is None:
            install = self.root / "opt" / "gpufleet"
            for rel, text in bundle_files().items():
                path = install / PACKAGE_PATH / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            self._installed = install
        return self._installed

    def devices_dir(self, instance_type: str) -> Path:
        """Fake ``nvidia-smi`` / ``fi_info`` / ``dmesg`` printing the type's recordings."""
        facts = lookup(instance_type)
        where = self.root / "devices" / instance_type
        if where.exists():
            return where
        where.mkdir(parents=True)
        tools = {"dmesg": "dmesg.txt"}
        if (smi := RECORDINGS.get((facts.gpu_model, facts.gpus))) is not None:
            tools["nvidia-smi"] = smi
            tools["dcgmi"] = DCGM_RECORDING
        if (efa := EFA_RECORDINGS.get(facts.efa_interfaces)) is not None:
            tools["fi_info"] = efa
        for name, recording in tools.items():
            tool = where / name
            tool.write_text(f"#!/bin/sh\ncat '{DEVICES / recording}'\n")
            tool.chmod(0o755)
        return where

    def run(self, instance_id: str, argv: list[str]) -> dict[str, Any]:
        """``{"returncode", "stdout", "stderr", "instanceType", "account"}``; UnknownInstance for a dead id."""
        account, instance_type = find_instance(instance_id)
        try:
            devices = self.devices_dir(instance_type)
        except UnknownInstanceTypeError:
            devices = self.root / "devices" / "none"
            devices.mkdir(parents=True, exist_ok=True)
        home = self.root / "home" / instance_id
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{devices}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
               "PYTHONPATH": str(self.install_dir()), "PYTHONNOUSERSITE": "1",
               "GPUFLEET_INSTANCE_TYPE": instance_type, "GPUFLEET_NODE_NAME": instance_id,
               "GPUFLEET_NO_IMDS": "1", "GPUFLEET_HEALTH_DISK_PATHS": str(home)}
        with self._lock:
            try:
                done = subprocess.run([self.python, "-m", "gpufleet.lifecycle.health", *argv], cwd=home, env=env,
                                      capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
                answer = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:]}
            except subprocess.TimeoutExpired:
                answer = {"returncode": 124, "stdout": "", "stderr": f"health checks did not finish in {TIMEOUT_S:.0f} s"}
            answer.update(instanceId=instance_id, instanceType=instance_type, account=account)
            self.runs.append(answer)
        return answer

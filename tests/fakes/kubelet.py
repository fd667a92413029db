"""The scheduler, the Job controller, the kubelets and the cluster DNS, for Jobs created in the
Kubernetes API fake (tests/fakes/kube.py): each Job's pods run here, as local processes.

Scheduling is the real scheduler's rules for what our Jobs use: required node affinity on node
names, every NoSchedule taint of the node tolerated, required pod anti-affinity on the hostname
(pods that match its selector never share a node); a pod nothing can take stays Pending. The
nodes are tried in ``node_order`` (the real scheduler's scores pick one; tests try both orders).
As the Job controller: a NonIndexed Job runs one pod; an Indexed Job runs ``completions`` pods at
once, each labelled with its index (deleting the Job kills its pods' processes), given ``JOB_COMPLETION_INDEX`` and the hostname
``<job>-<index>`` (``$HOSTNAME``). As the kubelet: the container's env with its downward-API fields, PATH first
to the node's ``devices`` and to the image's ``python3`` (the node's interpreter). As the cluster
DNS: ``getent hosts <hostname>.<subdomain>[.<namespace>[.svc[.cluster.local]]]`` answers
127.0.0.1 exactly when a headless Service of that name in the namespace selects the pod (every
pod runs on this host); any other name is not found; ``queries(job)`` lists what was asked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes.kube import FakeKube, selects

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


class FakeKubelet:
    """``with FakeKubelet(fake, python, install_dir, devices, work_dir) as kubelet:``; ``kubelet.jobs``
    holds every Job it ran, ``kubelet.pods`` every pod as (job, index, node or None, env)."""

    def __init__(self, fake: FakeKube, python: Path, install_dir: Path, devices: Path, work_dir: Path,
                 node_order: list[str] | None = None, timeout_s: float = 300.0) -> None:
        self.fake, self.python, self.install_dir, self.devices = fake, python, install_dir, devices
        self.work_dir, self.node_order, self.timeout_s = work_dir, node_order, timeout_s
        self.jobs: list[dict] = []
        self.pods: list[tuple[str, int | None, str | None, dict[str, str]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        seen: set[str] = set()
        while not self.stop.wait(0.05):
            with self.fake.lock:
                new = [(ns, name, job) for (collection, ns, name), job in self.fake.objects.items()
                       if collection == "jobs" and name not in seen]
            for ns, name, job in new:
                seen.add(name)
                self.jobs.append(job)
                self.run(ns, name, job)

    # -- the scheduler -----------------------------------------------------------------------------
    def schedule(self, pod: dict, labels: dict[str, str], taken: list[tuple[str, dict[str, str]]]) -> str | None:
        (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        (field,) = term["matchFields"]
        assert field["key"] == "metadata.name" and field["operator"] == "In", field
        allowed = [n for n in (self.node_order or field["values"]) if n in field["values"] and n in self.fake.nodes]
        tolerated = {(t["key"], t.get("effect")) for t in pod.get("tolerations", []) if t["operator"] == "Exists"}
        apart = [t for t in (pod["affinity"].get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution", [])]
        for name in allowed:
            node = self.fake.nodes[name]
            if any((t["key"], t["effect"]) not in tolerated for t in node["spec"]["taints"] if t["effect"] == "NoSchedule"):
                continue
            if any(t["topologyKey"] == "kubernetes.io/hostname" and on == name
                   and all(other.get(k) == v for k, v in t["labelSelector"]["matchLabels"].items())
                   for t in apart for on, other in taken):
                continue
            return name
        return None

    # -- the cluster DNS -------------------------------------------------------------------------
    def dns_names(self, ns: str, hostname: str, subdomain: str | None, labels: dict[str, str]) -> list[str]:
        if not subdomain:
            return []
        with self.fake.lock:
            service = self.fake.objects.get(("services", ns, subdomain))
        if service is None or service["spec"].get("clusterIP") != "None" or \
                not selects(",".join(f"{k}={v}" for k, v in service["spec"].get("selector", {}).items()), labels):
            return []
        base = f"{hostname}.{subdomain}"
        return [base, f"{base}.{ns}", f"{base}.{ns}.svc", f"{base}.{ns}.svc.cluster.local"]

    def bin_dir(self, job: str, names: list[str]) -> Path:
        """The image's ``python3`` and the resolver as the cluster DNS answers for this Job's pods."""
        directory = self.work_dir / f"{job}-bin"
        directory.mkdir(parents=True, exist_ok=True)
        python = directory / "python3"
        python.write_text(f'#!/bin/sh\nexec "{self.python}" "$@"\n')
        known = " ".join(f'"{n}"' for n in names)
        getent = directory / "getent"
        getent.write_text(f'#!/bin/sh\necho "$HOSTNAME $2" >> "{self.dns_log(job)}"\n[ "$1" = hosts ] || exit 1\n'
                          f'for n in {known}; do [ "$2" = "$n" ] && {{ echo "127.0.0.1       $2"; exit 0; }}; done\n'
                          'exit 2\n')
        for tool in (python, getent):
            tool.chmod(0o755)
        return directory

    def dns_log(self, job: str) -> Path:
        """The names the pods of ``job`` asked the cluster DNS for: lines ``<pod hostname> <name>``."""
        return self.work_dir / f"{job}-dns.log"

    def queries(self, job: str) -> list[tuple[str, str]]:
        log = self.dns_log(job)
        return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()] if log.exists() else []

    # -- the Job controller and the kubelet --------------------------------------------------------
    def run(self, ns: str, name: str, job: dict) -> None:
        spec = job["spec"]
        pod = spec["template"]["spec"]
        indexed = spec.get("completionMode") == "Indexed"
        indices: list[int | None] = list(range(spec.get("completions", 1))) if indexed else [None]
        planned = []
        taken: list[tuple[str, dict[str, str]]] = []
        for index in indices:
            labels = {**spec["template"]["metadata"].get("labels", {}), "job-name": name}
            if index is not None:
                labels[INDEX_LABEL] = str(index)
            node = self.schedule(pod, labels, taken)
            pod_name = f"{name}-{index}-x7k2p" if index is not None else f"{name}-x7k2p"
            if node is None:
                self.fake.add_pod(ns, pod_name, "", labels=labels, phase="Pending")
                self.pods.append((name, index, None, {}))
                continue
            taken.append((node, labels))
            planned.append((index, node, labels, pod_name))
        names = [dns for index, _, labels, _ in planned if index is not None
                 for dns in self.dns_names(ns, f"{name}-{index}", pod.get("subdomain"), labels)]
        bin_dir = self.bin_dir(name, names)
        (container,) = pod["containers"]
        procs = []
        for index, node, labels, pod_name in planned:
            env = {"PATH": f"{self.devices}:{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(self.install_dir),
                   "HOME": "/tmp", "GPUFLEET_NO_IMDS": "1", "GPUFLEET_HEALTH_DISK_PATHS": "/tmp"}
            for var in container.get("env", []):
                env[var["name"]] = var["value"] if "value" in var else self.field(var["valueFrom"], node, pod_name, ns)
            env["HOSTNAME"] = f"{name}-{index}" if index is not None else pod_name
            if index is not None:
                env["JOB_COMPLETION_INDEX"] = str(index)
            self.pods.append((name, index, node, env))
            self.fake.add_pod(ns, pod_name, node, labels=labels, phase="Running")
            log = self.work_dir / f"{pod_name}.log"
            with log.open("w") as out:
                procs.append((pod_name, node, labels, log, subprocess.Popen(
                    container["command"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)))
        deadline = time.monotonic() + self.timeout_s
        while any(proc.poll() is None for *_, proc in procs):
            with self.fake.lock:
                gone = ("jobs", ns, name) not in self.fake.objects
            if gone or time.monotonic() > deadline:
                # The Job was deleted (its pods go with it) or ran past the fake's limit: kill them.
                for *_, proc in procs:  # the container's every process, as its cgroup goes
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                if gone:
                    with self.fake.lock:
                        for pod_name, *_ in procs:
                            self.fake.pods.pop((ns, pod_name), None)
                    return
            time.sleep(0.1)
        for pod_name, node, labels, log, proc in procs:
            self.fake.add_pod(ns, pod_name, node, labels=labels, log=log.read_text(),
                              phase="Succeeded" if proc.returncode == 0 else "Failed")

    @staticmethod
    def field(source: dict[str, Any], node: str, pod_name: str, ns: str) -> str:
        path = source["fieldRef"]["fieldPath"]
        values = {"spec.nodeName": node, "metadata.name": pod_name, "metadata.namespace": ns}
        assert path in values, f"the fake kubelet resolves no downward-API field {path}"
        return values[path]

    def __enter__(self) -> FakeKubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=self.timeout_s + 30)

"""What a failed check does to the node in its workload manager.

Slurm: drain with the reason (``scontrol update nodename=X state=drain reason="gpufleet: <check>:
<detail>"``); a node drained by us (reason starts with ``gpufleet:``) is resumed once every check
passes again, as LBNL NHC does with its own drains. A drain set by an operator is never lifted.

Kubernetes: taint ``gpufleet.io/unhealthy=<check>:NoSchedule`` and label ``gpufleet.io/health``
(``fail`` / ``pass``) plus ``gpufleet.io/health-check=<check>``, through the official client; a
pass removes our taint only.
"""

from __future__ import annotations

import re
from typing import Any

from gpufleet.lifecycle.health.results import CheckResult, NodeReport, Status
from gpufleet.lifecycle.health.runner import CommandOutput, CommandRunner

REASON_PREFIX = "gpufleet:"
TAINT_KEY = "gpufleet.io/unhealthy"
HEALTH_LABEL = "gpufleet.io/health"
CHECK_LABEL = "gpufleet.io/health-check"
MAX_REASON = 200


def first_failure(report: NodeReport) -> CheckResult | None:
    failures = report.failures
    return failures[0] if failures else None


def drain_reason(result: CheckResult, more: int = 0) -> str:
    """``gpufleet: ecc: GPU 00000000:86:00.0: 2 volatile ...`` on one line, within Slurm's comfort."""
    detail = " ".join(result.detail.split())
    reason = f"{REASON_PREFIX} {result.check}: {detail}" + (f" (+{more} more)" if more else "")
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


class SlurmActions:
    """Drain / resume through scontrol (run by the CommandRunner, so the hook works without PATH)."""

    def __init__(self, runner: CommandRunner, timeout_s: float = 20.0) -> None:
        self.runner = runner
        self.timeout_s = timeout_s

    def drain(self, node: str, reason: str) -> CommandOutput:
        return self.runner.run(["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"],
                               self.timeout_s)

    def node_state(self, node: str) -> tuple[str, str]:
        """(State, Reason) of ``scontrol show node``; ("", "") when the node is unknown."""
        out = self.runner.run(["scontrol", "show", "node", node], self.timeout_s)
        if not out.ok:
            return "", ""
        state = re.search(r"\bState=(\S+)", out.stdout)
        reason = re.search(r"\bReason=(.*?)(?: \[[^\]]*\])?$", out.stdout, re.MULTILINE)
        return (state.group(1) if state else ""), (reason.group(1).strip() if reason else "")

    def resume_if_ours(self, node: str) -> bool:
        """Resume a node that we drained; True when it was resumed."""
        state, reason = self.node_state(node)
        if "DRAIN" not in state or not reason.startswith(REASON_PREFIX):
            return False
        return self.runner.run(["scontrol", "update", f"nodename={node}", "state=resume"], self.timeout_s).ok

    def apply(self, report: NodeReport) -> str:
        """Drain on FAIL, resume our own drain on PASS/WARN; returns what was done, for the log."""
        failure = first_failure(report)
        if failure is not None:
            reason = drain_reason(failure, more=len(report.failures) - 1)
            out = self.drain(report.node, reason)
            return f"drained {report.node}: {reason}" if out.ok else f"drain of {report.node} failed: {out.describe()}"
        if self.resume_if_ours(report.node):
            return f"resumed {report.node}: every check passes"
        return f"{report.node}: {report.status.value}, nothing to do"


class KubernetesActions:
    """Taint and label through ``kubernetes.client.CoreV1Api`` (pass one built from your ApiClient)."""

    def __init__(self, core_v1: Any) -> None:
        self.core = core_v1

    def apply(self, report: NodeReport) -> str:
        failure = first_failure(report)
        node = self.core.read_node(report.node)
        theirs = [t for t in (node.spec.taints or []) if t.key != TAINT_KEY]
        taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in theirs]
        if failure is not None:
            taints.append({"key": TAINT_KEY, "value": _label_value(failure.check), "effect": "NoSchedule"})
            labels: dict[str, str | None] = {HEALTH_LABEL: "fail", CHECK_LABEL: _label_value(failure.check)}
        else:
            labels = {HEALTH_LABEL: "pass" if report.status is not Status.WARN else "warn", CHECK_LABEL: None}
        body = {"metadata": {"labels": labels, "resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints}}
        self.core.patch_node(report.node, body)
        if failure is not None:
            return f"tainted {report.node} {TAINT_KEY}={_label_value(failure.check)}:NoSchedule"
        return f"{report.node}: {report.status.value}, no gpufleet taint"


def _label_value(text: str) -> str:
    """A valid label value: 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63].strip("_.-")
    return value or "unknown"

"""The healer's sources beside the orchestrator: EC2 instance status checks and the central
Prometheus's GPU alerts, as decision-table signals added to the orchestrator's observations.

- **EC2 status checks** (DescribeInstanceStatus in each node's account, through its operator role):
  a system or instance check ``impaired`` is ``ec2_status_failed`` (replace: the host or the
  instance stopped answering AWS's reachability probe; a new instance moves off it).
  ``insufficient-data`` and ``initializing`` are no verdict and add nothing.
- **Prometheus alerts** (the same query client as the scheduler's signals, SigV4 for Amazon
  Managed Prometheus): the firing ``GpuXidCritical`` alerts of monitoring/rules/gpu.yaml joined to
  dcgm-exporter's last Xid per GPU give ``xid:<code>`` (the alert's own value is 1: the code is the
  metric's), ``GpuEccDoubleBitError`` gives ``ecc_double_bit`` and ``GpuRowRemapFailure``
  ``row_remap_failure``; matched to a node by the ``node`` label (the Kubernetes node or Slurm host
  name the collectors set) within its ``account`` (the node's stack's account).

A source that cannot be read adds nothing and says so in a note: the orchestrator's own signals
still decide.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpufleet.automation.aws import translated
from gpufleet.automation.heal.decide import NodeObservation
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.schedule.signals import PrometheusSource, amp_query_base
from gpufleet.infra.errors import BadInputError, GpufleetError

EC2_SIGNAL = "ec2_status_failed"
ALERT_SIGNALS = {"GpuEccDoubleBitError": "ecc_double_bit", "GpuRowRemapFailure": "row_remap_failure"}
"""Alert name (monitoring/rules/gpu.yaml) -> signal; GpuXidCritical is read with its code (XID_QUERY)."""
ALERTS_QUERY = 'ALERTS{alertstate="firing", alertname=~"' + "|".join(ALERT_SIGNALS) + '"}'
XID_QUERY = ('DCGM_FI_DEV_XID_ERRORS and on (node, gpu) '
             'ALERTS{alertstate="firing", alertname="GpuXidCritical"}')
SOURCES = ("ec2", "prometheus")
DESCRIBE_BATCH = 100
"""DescribeInstanceStatus takes at most 100 instance ids a call."""


def impaired(ec2: Any, instance_ids: Sequence[str], stack: str) -> set[str]:
    """The instances whose system or instance status check is impaired."""
    out: set[str] = set()
    for i in range(0, len(instance_ids), DESCRIBE_BATCH):
        batch = list(instance_ids[i:i + DESCRIBE_BATCH])
        with translated(stack=stack, service="ec2", subject=", ".join(batch[:3]), operation="describe_instance_status"):
            pages = ec2.get_paginator("describe_instance_status").paginate(InstanceIds=batch)
            for page in pages:
                for status in page.get("InstanceStatuses", []):
                    checks = (status.get("SystemStatus", {}).get("Status"), status.get("InstanceStatus", {}).get("Status"))
                    if "impaired" in checks:
                        out.add(status["InstanceId"])
    return out


def ec2_signals(observations: Iterable[NodeObservation], ec2_for: Callable[[str], Any]) -> dict[str, tuple[str, ...]]:
    """Instance id -> (``ec2_status_failed``,) for each impaired instance; ``ec2_for``: stack -> client."""
    by_stack: dict[str, list[str]] = {}
    for o in observations:
        if o.instance_id and o.group:
            by_stack.setdefault(o.group.split("/", 1)[0], []).append(o.instance_id)
    out: dict[str, tuple[str, ...]] = {}
    for stack, ids in sorted(by_stack.items()):
        for iid in impaired(ec2_for(stack), sorted(set(ids)), stack):
            out[iid] = (EC2_SIGNAL,)
    return out


NodeKey = tuple[str, str]
"""(account id, node name) of an alert; the account is "" when the series carries none."""


def alert_signals(source: PrometheusSource) -> dict[NodeKey, tuple[str, ...]]:
    """(account, node) -> the signals its firing GPU alerts give."""
    found: dict[NodeKey, list[str]] = {}
    for labels, value in source.instant_query(XID_QUERY):
        if labels.get("node") and value == int(value) and value > 0:
            found.setdefault((labels.get("account", ""), labels["node"]), []).append(f"xid:{int(value)}")
    for labels, _ in source.instant_query(ALERTS_QUERY):
        if labels.get("node") and labels.get("alertname") in ALERT_SIGNALS:
            found.setdefault((labels.get("account", ""), labels["node"]), []).append(ALERT_SIGNALS[labels["alertname"]])
    return {key: tuple(sorted(set(signals))) for key, signals in found.items()}


def default_sources(inventory_path: Path, clients: Callable[[str, str], Any], which: Sequence[str],
                    prometheus_url: str | None = None) -> HealSources:
    """``which``: of ``ec2``, ``prometheus``. The alerts are read at ``prometheus_url`` (a plain
    Prometheus), else from the inventory's Managed Prometheus workspace, signed with the platform
    stack's credentials (the automation role may query it), else not at all."""
    unknown = sorted(set(which) - set(SOURCES))
    if unknown:
        raise BadInputError(f"--sources {','.join(which)!r}: unknown {', '.join(unknown)}", f"expected any of {', '.join(SOURCES)}")
    prometheus = None
    inventory = load_inventory(inventory_path)
    if "prometheus" in which:
        monitoring = inventory.platform.monitoring
        if prometheus_url:
            prometheus = PrometheusSource(base_url=prometheus_url)
        elif monitoring is not None:
            from gpufleet.automation.aws import AwsAccess

            session = AwsAccess(inventory, operation="heal").session(inventory.platform_stack)
            endpoint = os.environ.get("AWS_ENDPOINT_URL_AMP") or os.environ.get("AWS_ENDPOINT_URL")
            prometheus = PrometheusSource(base_url=amp_query_base(monitoring.remote_write_url, endpoint),
                                          region=session.region_name, credentials=session.get_credentials())
    return HealSources(ec2_for=(lambda stack: clients(stack, "ec2")) if "ec2" in which else None,
                       prometheus=prometheus,
                       accounts={name: out.account_id for name, out in inventory.stacks.items()})


def with_signals(observations: Sequence[NodeObservation], by_instance: Mapping[str, tuple[str, ...]],
                 by_node: Mapping[NodeKey, tuple[str, ...]],
                 accounts: Mapping[str, str] | None = None) -> list[NodeObservation]:
    """The observations with the sources' signals added (the orchestrator's first, no repeats).
    ``accounts``: stack -> account id; an alert of another account than the node's is not its own
    (the central Prometheus holds every account's series, and node names repeat across clusters)."""
    accounts = accounts or {}
    out = []
    for o in observations:
        account = accounts.get(o.group.split("/", 1)[0], "")
        alerts = [signals for (their, node), signals in sorted(by_node.items())
                  if node == o.node and (their == account or not their or not account)]
        more = (*by_instance.get(o.instance_id, ()), *(s for signals in alerts for s in signals))
        signals = tuple(dict.fromkeys((*o.signals, *more)))
        out.append(dataclasses.replace(o, signals=signals) if signals != o.signals else o)
    return out


@dataclasses.dataclass(kw_only=True)
class HealSources:
    """The sources a pass adds to its orchestrator's observations; call it with the observations."""

    ec2_for: Callable[[str], Any] | None = None
    """stack -> that account's EC2 client; None: no status checks read."""
    prometheus: PrometheusSource | None = None
    """The central Prometheus; None: no alerts read."""
    accounts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """stack -> account id, to match an alert's ``account`` label to the node's."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """What could not be read, from the last call."""

    def __call__(self, observations: list[NodeObservation]) -> list[NodeObservation]:
        self.notes = []
        by_instance: dict[str, tuple[str, ...]] = {}
        by_node: dict[NodeKey, tuple[str, ...]] = {}
        if self.ec2_for is not None:
            try:
                by_instance = ec2_signals(observations, self.ec2_for)
            except GpufleetError as err:
                self.notes.append(f"EC2 status checks not read ({err.message}): the orchestrator's signals decide")
        if self.prometheus is not None:
            try:
                by_node = alert_signals(self.prometheus)
            except GpufleetError as err:
                self.notes.append(f"Prometheus alerts not read ({err.message}): the orchestrator's signals decide")
        return with_signals(observations, by_instance, by_node, self.accounts)

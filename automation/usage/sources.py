"""The spans the ledger needs, read from what exists: Auto Scaling activity, EC2, the journal.

- Node lives: each consumer Auto Scaling group's activity history (``Launching a new EC2
  instance: i-...`` / ``Terminating EC2 instance: i-...``, Successful), and for an instance still in
  the group whose launch is older than the history Auto Scaling keeps (six weeks), its EC2
  LaunchTime.
- Move phases: the journal. A victim drains from the move's CHECKPOINTING transition until it is
  released; a newcomer boots, joins and is gated from the RELEASED transition until JOINED (or the
  move's end); the ledger counts only what falls inside the node's own life.
- Reservations: the pools of the stack-output contract, priced from the instance catalog.
- Slurm jobs (``--by job``): slurmdbd's accounting through the Slurm client, on the head or a
  login node (``SLURM_CONF`` picks the cluster), for stacks whose node groups join Slurm.
- Kubernetes jobs (``--by job``): pods' GPU requests from kube-state-metrics in the central
  Prometheus (the platform's AMP workspace, SigV4 with the caller's platform credentials), for
  stacks whose node groups join EKS.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gpufleet.automation.aws import AwsAccess
from gpufleet.automation.inventory import FleetInventory, StackNodeGroup
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Event, Journal, Operation
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.automation.usage import jobs as slurm_jobs
from gpufleet.automation.usage import pods as pod_jobs
from gpufleet.automation.usage.prometheus_query import PrometheusQuery, query_base
from gpufleet.automation.usage.spans import MovePhase, NodeSpan, PoolSlots
from gpufleet.infra import catalog
from gpufleet.infra.errors import BadInputError

LAUNCH = re.compile(r"^Launching a new EC2 instance: (i-[0-9a-f]+)")
TERMINATE = re.compile(r"^Terminating EC2 instance: (i-[0-9a-f]+)")


def _epoch(value: Any) -> float:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return datetime.datetime.fromisoformat(str(value)).timestamp()


def pool_slots(inventory: FleetInventory, *, parse: Callable[[str], float] = _epoch) -> list[PoolSlots]:
    """Every pool as a reservation: its unused slots billed to the platform stack (the owner) or to
    the consumer stack that took billing ownership; priced at a Capacity Block's purchase price or
    the on-demand rate."""
    out = []
    for pool in inventory.pools:
        facts = catalog.lookup(pool.instance_type)
        owner_stack, owner_account = inventory.platform_stack, inventory.platform.account_id
        if pool.unused_billed_to:
            owner_stack = next((name for name, o in sorted(inventory.stacks.items())
                                if o.role == pool.unused_billed_to), f"({pool.unused_billed_to})")
            owner_account = pool.unused_billing_owner_id or owner_account
        price = facts.price_usd_per_hour if pool.price_usd_per_hour is None else pool.price_usd_per_hour
        out.append(PoolSlots(name=pool.name, owner_stack=owner_stack, owner_account_id=owner_account,
                             instance_type=pool.instance_type, gpus_per_node=facts.gpus, slots=pool.count,
                             kind=pool.kind, price_usd_per_node_hour=price,
                             reservation_arn=pool.reservation_arn,
                             start=parse(pool.start_time) if pool.start_time else None,
                             end=parse(pool.end_time) if pool.end_time else None))
    return out


def node_spans(ref: StackNodeGroup, activities: Iterable[dict[str, Any]], current: Sequence[str],
               launch_times: dict[str, float], account_id: str) -> list[NodeSpan]:
    """One group's node lives from its activities (any order) and the instances it holds now."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for activity in activities:
        if activity.get("StatusCode") != "Successful":
            continue
        description = str(activity.get("Description", ""))
        if m := LAUNCH.match(description):
            starts[m.group(1)] = _epoch(activity["StartTime"])
        elif m := TERMINATE.match(description):
            ends[m.group(1)] = _epoch(activity.get("EndTime") or activity["StartTime"])
    for iid in current:
        if iid not in starts and iid in launch_times:
            starts[iid] = launch_times[iid]
        ends.pop(iid, None)
    return [NodeSpan(instance_id=iid, stack=ref.stack, account_id=account_id, role=ref.role,
                     pool=ref.group.pool, start=start, end=ends.get(iid))
            for iid, start in sorted(starts.items())]


def _transitions(events: Iterable[Event]) -> dict[str, float]:
    """State -> when the move first entered it (seconds)."""
    out: dict[str, float] = {}
    for ev in sorted(events, key=lambda e: e.at_ns):
        if ev.event_type == "transition":
            out.setdefault(ev.state, ev.at_ns / 1e9)
    return out


def move_phases(op: Operation, events: Iterable[Event], now: float) -> list[MovePhase]:
    """The phases of one move (see the module's docstring)."""
    plan = op.body.get("plan") or {}
    progress = op.body.get("progress") or {}
    at = _transitions(events)
    final = [at[s] for s in ("DONE", "ROLLED_BACK") if s in at]
    end = min(final) if final else now
    phases = []
    if "CHECKPOINTING" in at:
        drained_until = at.get("RELEASED", end)
        phases += [MovePhase(op_id=op.op_id, instance_id=v["instance_id"], step="draining",
                             start=at["CHECKPOINTING"], end=drained_until) for v in plan.get("victims", [])]
    if "RELEASED" in at:
        joined = at.get("JOINED", end)
        phases += [MovePhase(op_id=op.op_id, instance_id=iid, step="booting", start=at["RELEASED"], end=joined)
                   for iid in progress.get("acquired", [])]
    return phases


def _activities(client: Any, asg: str, since: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("describe_scaling_activities").paginate(AutoScalingGroupName=asg):
        items = page.get("Activities", [])
        out += items
        # Newest first: once a page reaches before the period, older pages cannot matter.
        if items and _epoch(items[-1]["StartTime"]) < since - 6 * 7 * 86400:
            break
    return out


def read(inventory: FleetInventory, access: AwsAccess, since: float, *, now: float | None = None,
         on_step: Callable[[str], None] | None = None) -> tuple[list[PoolSlots], list[NodeSpan], list[MovePhase]]:
    """Pools, node lives and move phases of the fleet, from AWS and the journal."""
    say = on_step or (lambda _s: None)
    now = time.time() if now is None else now
    pools = pool_slots(inventory)
    nodes: list[NodeSpan] = []
    for ref in inventory.node_groups:
        say(f"reading the activity of {ref.group.asg_name} ({ref.stack})")
        asg = access.client(ref.stack, "autoscaling")
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[ref.group.asg_name])["AutoScalingGroups"]
        current = [i["InstanceId"] for g in groups for i in g.get("Instances", [])]
        activities = _activities(asg, ref.group.asg_name, since)
        launched = {m.group(1) for a in activities if (m := LAUNCH.match(str(a.get("Description", ""))))}
        unknown = [iid for iid in current if iid not in launched]
        launch_times: dict[str, float] = {}
        if unknown:
            ec2 = access.client(ref.stack, "ec2")
            for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=unknown):
                for reservation in page.get("Reservations", []):
                    for inst in reservation.get("Instances", []):
                        launch_times[inst["InstanceId"]] = _epoch(inst["LaunchTime"])
        nodes += node_spans(ref, activities, current, launch_times, inventory.stacks[ref.stack].account_id)
    say("reading the journal")
    journal = Journal(access.client(inventory.platform_stack, "dynamodb", passthrough=CONTROL_FLOW),
                      inventory.journal_table)
    phases: list[MovePhase] = []
    for op in journal.list_ops():
        phases += move_phases(op, journal.events(op.op_id), now)
    return pools, nodes, phases


def slurm_stacks(inventory: FleetInventory) -> list[str]:
    """Stacks whose node groups join Slurm (the program's orchestrator, not a sandbox's stand-in)."""
    return orchestrated(inventory, "slurm")


def orchestrated(inventory: FleetInventory, orchestrator: str) -> list[str]:
    """Stacks whose node groups join ``orchestrator`` (the program's, not a sandbox's stand-in)."""
    return sorted(name for name, out in inventory.stacks.items()
                  if any(g.orchestrator == orchestrator for g in out.node_groups))


def prometheus(inventory: FleetInventory, access: AwsAccess, url: str | None = None) -> PrometheusQuery:
    """The central Prometheus (the platform's AMP workspace, or ``url``), signed with the platform session."""
    session = access.session(inventory.platform_stack)
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise BadInputError(f"--prometheus-url {url!r}: not an http(s) URL")
        return PrometheusQuery(url, region=inventory.platform.region, credentials=session.get_credentials())
    monitoring = inventory.platform.monitoring
    if monitoring is None:
        raise BadInputError(f"--by job: the platform stack of {inventory.source} exports no monitoring workspace",
                            "run `pulumi up` on the platform stack, then `gpufleet inventory collect`")
    return PrometheusQuery(query_base(monitoring.remote_write_url), region=inventory.platform.region,
                           credentials=session.get_credentials())


def kubernetes_jobs(query: PrometheusQuery, stacks: Sequence[str], start: float, end: float,
                    step_s: int = pod_jobs.DEFAULT_STEP_S) -> list[pod_jobs.PodJobUsage]:
    """GPU-seconds per Kubernetes job of ``stacks`` in ``[start, end)``, one query per window."""
    expression = pod_jobs.promql(stacks, step_s)
    series = []
    for first, last in pod_jobs.windows(start, end, step_s):
        series += query.query_range(expression, first, last, step_s)
    return pod_jobs.accumulate(series, start, end, step_s)


def jobs(slurm: SlurmClient, start: float, end: float, nodes: Sequence[NodeSpan],
         ) -> tuple[list[slurm_jobs.JobUsage], list[str]]:
    """Slurm's jobs in ``[start, end)`` and the GPU-seconds of theirs no node's life covers."""
    found = slurm_jobs.parse_sacct(slurm.accounting(start, end, slurm_jobs.SACCT_FIELDS), start, end)
    hosts = {job.node_list: slurm.hostnames(job.node_list)
             for job in found if job.gpus and job.node_list not in slurm_jobs.UNSET | {"None assigned"}}
    return found, slurm_jobs.findings(found, hosts, nodes, start, end)

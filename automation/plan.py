"""`gpufleet plan`: what each stack would create, which reserved GPUs it uses, what it costs.

Offline: the stack files are validated, the capacity ledger is checked, and the real Pulumi program
is rendered under mocks (infra/offline). No credentials, no Pulumi CLI. Never imports typer or rich.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpufleet.infra import catalog, cost, eks_scheduling, guardrails, stackfile
from gpufleet.infra.capacity import PoolUsage
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.findings import Finding, placement_findings, pool_findings
from gpufleet.infra.model import Role, StackSpec
from gpufleet.infra.rendered import RenderedStack

if TYPE_CHECKING:
    from gpufleet.automation.drift import LiveDrift

DEFAULT_STACKS_DIR = Path("stacks")
EFA_TYPES = ("efa", "efa-only")


@dataclass(frozen=True, kw_only=True)
class NodeGroupPlan:
    """One GPU node group as rendered (the keys of a node group everywhere: docs/json.md)."""

    stack: str
    """The stack (account) that holds it."""
    name: str
    pool: str
    """The platform pool it draws from."""
    instance_type: str
    initial_nodes: int
    """The size the group is created with; the rebalancer owns the live size (``gpufleet status``)."""
    min_nodes: int
    max_nodes: int
    gpus: int
    """GPUs at the initial size."""
    gpu_model: str
    efa_interfaces: int
    """EFA interfaces per node in the rendered launch template."""
    placement_group: bool
    """A cluster placement group was rendered for it."""
    capacity_reservation_id: str | None
    """Reservation the launch template targets (None: open, on-demand)."""
    usd_per_hour: float
    """At the initial size."""


@dataclass(frozen=True, kw_only=True)
class StoragePlan:
    """FSx for Lustre and its dataset bucket, as rendered."""

    file_system: str
    deployment_type: str
    capacity_gib: int
    throughput_per_tib: int
    data_repository_path: str
    import_events: list[str]
    export_events: list[str]


@dataclass(frozen=True, kw_only=True)
class ClusterPlan:
    """A cluster (EKS or Slurm) as rendered."""

    kind: str
    """eks or slurm."""
    name: str
    endpoint_access: str
    """EKS API endpoint: private, or public+private (CIDR-restricted); empty for Slurm."""
    node_groups: list[str]
    """Node groups the cluster runs: the GPU groups, and EKS's CPU system group."""
    add_ons: list[str]
    """EKS managed add-ons and Helm charts."""


@dataclass(frozen=True, kw_only=True)
class StackPlan:
    name: str
    role: str
    account_id: str
    region: str
    source: str
    """The stack file."""
    num_resources: int
    """Resources the engine would manage (components not counted)."""
    resources_by_type: dict[str, int]
    node_groups: list[NodeGroupPlan]
    storage: list[StoragePlan]
    cost_per_hour_usd: float
    cost_items: list[cost.CostItem]
    clusters: list[ClusterPlan] = field(default_factory=list)
    priced: bool = True
    """False: no prices ship for the stack's region; its cost is not estimated (shown as 0)."""
    """The orchestrator(s) of a consumer stack and the node groups each runs."""
    ram_sharing: str = ""
    """How pool shares reach consumers, as rendered: ``organization`` (no external principals,
    nothing to accept), ``invitation`` (the platform's shares allow external principals; each
    consumer accepts), ``invitation, accepts N shares`` on a consumer; empty: no share involved."""


@dataclass(frozen=True, kw_only=True)
class FleetPlan:
    stacks: list[StackPlan]
    pools: list[PoolUsage]
    """The capacity ledger at the initial sizes; empty when the platform stack is not in the plan."""
    findings: list[Finding]
    totals: dict[str, float | int]
    notes: list[str] = field(default_factory=list)
    """What the plan did not check, and where the prices come from."""
    live: LiveDrift | None = None
    """``--live``: where the live fleet differs from the stack files."""

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "stacks": [asdict(s) for s in self.stacks],
            "pools": [p.to_dict() for p in self.pools],
            "findings": [f.to_dict() for f in self.findings],
            "totals": dict(self.totals),
            "notes": list(self.notes),
        }
        if self.live is not None:
            doc["live"] = self.live.to_dict()
        return doc


def load_specs(stacks_dir: Path, names: Sequence[str] = ()) -> list[StackSpec]:
    """Every stack file in ``stacks_dir``, or only the named stacks (each must exist)."""
    if names:
        return [stackfile.load_stack(stacks_dir / f"Pulumi.{name}.yaml") for name in dict.fromkeys(names)]
    paths = stackfile.discover_stacks(stacks_dir)
    if not paths:
        raise ConfigError(str(stacks_dir), "(directory)", str(stacks_dir), "no Pulumi.<stack>.yaml files here")
    return [stackfile.load_stack(p) for p in paths]


def collect_findings(specs: Sequence[StackSpec], rendered: Sequence[RenderedStack]) -> list[Finding]:
    """Every finding of the plan: capacity combinations known to fail, then the guardrails over the
    rendered graph of all stacks together (infra/guardrails, docs/guardrails.md)."""
    resources = [r for stack in rendered for r in stack.resources]
    return placement_findings(specs) + pool_findings(specs) + guardrails.evaluate(resources, guardrails.FleetContext.from_specs(specs))


def failing_findings(plan: FleetPlan, *, strict: bool) -> list[Finding]:
    """Findings that fail ``gpufleet plan`` (exit 1): capacity errors always (the launch would fail);
    mandatory guardrail findings only with ``--strict`` (CI runs it so)."""
    ids = set(guardrails.rule_ids())
    return [f for f in plan.findings if f.severity == "error" and (strict or f.rule not in ids)]


USAGE_PRICED = ("aws:amp/workspace:Workspace", "aws:grafana/workspace:Workspace")
"""Managed services billed by use, not by the hour: named in a note, not estimated."""


def plan_fleet(specs: Sequence[StackSpec], *, on_stack: Callable[[StackSpec], None] | None = None) -> FleetPlan:
    """Check what spans the stack files (over-commit is bad input), render every stack, summarize."""
    pools = stackfile.check_fleet(specs)
    from gpufleet.infra.offline.render import (
        render_fleet,  # pulumi loads only once the input is valid
    )

    rendered = render_fleet(specs, on_stack=on_stack)
    findings = collect_findings(specs, rendered)
    order = {Role.PLATFORM: 0, Role.TRAINING: 1, Role.INFERENCE: 2}
    prices = cost.pool_prices(pools)
    stacks = [_stack_plan(r, prices) for r in sorted(rendered, key=lambda r: (order[r.spec.role], r.spec.name))]
    unused = cost.unused_reservation(pools)
    stacks = _bill_unused(stacks, unused)
    spares = cost.spare_nodes(pools)
    stacks = _bill_unused(stacks, {Role.TRAINING.value: spares} if spares else {})
    notes = []
    if stackfile.platform_of(specs) is None and any(s.role is not Role.PLATFORM for s in specs):
        notes.append("the platform stack is not in the plan: pool bindings and the capacity ledger were not "
                     "checked, and consumers were rendered against assumed pool outputs")
    if any(s.node_groups for s in stacks):
        notes.append("node groups are shown at their initial size (initialNodes): Pulumi sets it once, the "
                     "rebalancer owns the live size (`gpufleet status`, `gpufleet plan --live`)")
    notes += [f"unused reserved slots billed to {role or Role.PLATFORM.value} are not counted: no such stack in the plan"
              for role in unused if not any(s.role == (role or Role.PLATFORM.value) for s in stacks)]
    if spares and not any(s.role == Role.TRAINING.value for s in stacks):
        notes.append("hot spares are billed to the training stack, which is not in the plan: not counted")
    notes += [f"prices: {source}" for source in cost.price_sources()]
    if any(r.type in USAGE_PRICED for stack in rendered for r in stack.resources):
        notes.append("not in the hourly cost: Managed Prometheus (billed per sample ingested and queried) and "
                     "Managed Grafana (per active user); `gpufleet usage` meters the GPUs")
    notes += [f"no prices for {s.region}: the cost of stack {s.name} is not estimated" for s in stacks if not s.priced]
    totals = {
        "stacks": len(stacks),
        "resources": sum(s.num_resources for s in stacks),
        "initial_nodes": sum(g.initial_nodes for s in stacks for g in s.node_groups),
        "gpus": sum(g.gpus for s in stacks for g in s.node_groups),
        "cost_per_hour_usd": round(sum(s.cost_per_hour_usd for s in stacks), 2),
        "findings": len(findings),
        "errors": sum(1 for f in findings if f.severity == "error"),
    }
    return FleetPlan(stacks=stacks, pools=pools, findings=findings, totals=totals, notes=notes)


def _bill_unused(stacks: list[StackPlan], unused: dict[str | None, list[cost.CostItem]]) -> list[StackPlan]:
    """Unused reserved slots on the bill of the stack that pays them: the first stack of the role
    that took billing ownership, else the platform's."""
    payer: dict[int, list[cost.CostItem]] = {}
    for role, lines in unused.items():
        index = next((i for i, s in enumerate(stacks) if s.role == (role or Role.PLATFORM.value)), None)
        if index is None:
            continue  # the paying stack is not in this plan
        payer.setdefault(index, []).extend(lines)
    return [dataclasses.replace(s, cost_items=[*s.cost_items, *payer[i]],
                                cost_per_hour_usd=round(sum(c.usd_per_hour for c in [*s.cost_items, *payer[i]]), 2))
            if i in payer else s for i, s in enumerate(stacks)]


def _stack_plan(stack: RenderedStack, pool_prices: Mapping[str, float] | None = None) -> StackPlan:
    spec = stack.spec
    managed = [r for r in stack.resources if not r.is_component]
    by_type = dict(sorted(Counter(r.type for r in managed).items()))
    items = cost.stack_cost(stack, pool_prices)
    return StackPlan(
        name=spec.name, role=spec.role.value, account_id=spec.account_id, region=spec.region, source=spec.source,
        num_resources=len(managed), resources_by_type=by_type, node_groups=_node_groups(stack),
        storage=_storage(stack), cost_per_hour_usd=round(sum(i.usd_per_hour for i in items), 2), cost_items=items,
        clusters=_clusters(stack), priced=cost.has_prices(spec.region), ram_sharing=_ram_sharing(stack),
    )


def _ram_sharing(stack: RenderedStack) -> str:
    """What the rendered graph puts in force (not what the stack file asks for)."""
    shares = [r for r in stack.resources if r.type == "aws:ram/resourceShare:ResourceShare"]
    accepters = [r for r in stack.resources if r.type == "aws:ram/resourceShareAccepter:ResourceShareAccepter"]
    if accepters:
        return f"invitation, accepts {len(accepters)} share{'s' if len(accepters) > 1 else ''}"
    if shares:
        return "invitation" if any(r.inputs.get("allowExternalPrincipals") for r in shares) else "organization"
    return "organization" if stack.spec.node_groups else ""


def _clusters(stack: RenderedStack) -> list[ClusterPlan]:
    spec = stack.spec
    plans = []
    for cluster in stack.of_type("eks:index:Cluster"):
        inside = {r.urn for r in stack.resources if r.parent == cluster.parent}  # the EksGpuCluster's children
        groups = []
        for node_group in stack.of_type("aws:eks/nodeGroup:NodeGroup"):
            if node_group.inputs.get("clusterName") != cluster.inputs.get("name"):
                continue
            labels = node_group.inputs.get("labels") or {}
            groups.append(labels.get(eks_scheduling.NODE_GROUP_LABEL)
                          or ("system" if eks_scheduling.SYSTEM_LABEL in labels else node_group.name))
        add_ons = [a.inputs.get("addonName", a.name) for a in stack.of_type("aws:eks/addon:Addon")
                   if a.urn in inside or a.inputs.get("clusterName") == cluster.inputs.get("name")]
        add_ons += [str(r.inputs.get("name") or r.name) for r in stack.of_type("kubernetes:helm.sh/v3:Release")]
        public = bool(cluster.inputs.get("endpointPublicAccess"))
        plans.append(ClusterPlan(
            kind="eks", name=str(cluster.inputs.get("name") or cluster.name),
            endpoint_access="public+private" if public else "private",
            node_groups=sorted(groups), add_ons=add_ons))
    if not plans and spec.cluster_kind.value not in ("none", "eks"):
        exported = stack.exports.get("cluster") or {}
        plans.append(ClusterPlan(kind=spec.cluster_kind.value, name=str(exported.get("name") or spec.name),
                                 endpoint_access="", node_groups=[g.name for g in spec.node_groups], add_ons=[]))
    return plans


def _node_groups(stack: RenderedStack) -> list[NodeGroupPlan]:
    templates = {r.name: r for r in stack.of_type("gpufleet:compute:EfaNodeTemplate")}
    plans = []
    for group in stack.spec.node_groups:
        template = templates.get(group.name)
        children = list(stack.children_of(template.urn)) if template else []
        lts = [c for c in children if c.type == "aws:ec2/launchTemplate:LaunchTemplate"]
        interfaces = (lts[0].inputs.get("networkInterfaces") or []) if lts else []
        target = ((lts[0].inputs.get("capacityReservationSpecification") or {})
                  .get("capacityReservationTarget") or {}) if lts else {}
        info = catalog.lookup(group.instance_type)
        plans.append(NodeGroupPlan(
            stack=stack.spec.name, name=group.name, pool=group.pool, instance_type=group.instance_type, initial_nodes=group.initial_nodes,
            min_nodes=group.min_nodes, max_nodes=group.max_nodes, gpus=info.gpus * group.initial_nodes,
            gpu_model=info.gpu_model,
            efa_interfaces=sum(1 for i in interfaces if i.get("interfaceType") in EFA_TYPES),
            placement_group=any(c.type == "aws:ec2/placementGroup:PlacementGroup" for c in children),
            capacity_reservation_id=target.get("capacityReservationId"),
            usd_per_hour=round(info.price_usd_per_hour * group.initial_nodes, 2) if cost.has_prices(stack.spec.region) else 0.0,
        ))
    return plans


def _storage(stack: RenderedStack) -> list[StoragePlan]:
    associations = stack.of_type("aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation")
    plans = []
    for fs in stack.of_type("aws:fsx/lustreFileSystem:LustreFileSystem"):
        dras = [d for d in associations if d.inputs.get("fileSystemId") == fs.id]
        s3 = (dras[0].inputs.get("s3") or {}) if dras else {}
        plans.append(StoragePlan(
            file_system=fs.name, deployment_type=str(fs.inputs.get("deploymentType")),
            capacity_gib=int(fs.inputs.get("storageCapacity", 0)),
            throughput_per_tib=int(fs.inputs.get("perUnitStorageThroughput", 0)),
            data_repository_path=str(dras[0].inputs.get("dataRepositoryPath")) if dras else "",
            import_events=list((s3.get("autoImportPolicy") or {}).get("events") or []),
            export_events=list((s3.get("autoExportPolicy") or {}).get("events") or []),
        ))
    return plans

"""Composition: which components a stack gets, by its role, and what it exports.

``compose`` is called by stacks/__main__.py (the only place providers are built) with options that
carry the stack's provider; every component inherits it. What the stack exports is a
``StackOutputs`` (the contract, gpufleet.infra.contract); the program exports its ``to_dict()``.

Cluster kinds plug in through ``CLUSTER_PLUGINS``: a plugin chooses the node user data and IMDS
hop limit, and turns the node templates into node groups. A plugin with ``prepare`` builds its
cluster first (EKS: every node carries the cluster's security group) and then its node groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_aws import ram

from gpufleet.infra import reachability, registry_mirror
from gpufleet.infra.account_baseline import AccountBaseline, AccountBaselineArgs
from gpufleet.infra.asg_node_group import AsgNodeGroup, AsgNodeGroupArgs
from gpufleet.infra.capacity_pool import CapacityPool, CapacityPoolArgs
from gpufleet.infra.contract import (
    ClusterOutput,
    HealthGateOutput,
    MetricsOutput,
    MonitoringOutput,
    NodeGroupOutput,
    NodeImageOutput,
    PoolOutput,
    StackOutputs,
    StorageOutput,
)
from gpufleet.infra.efa_node_template import EfaNodeTemplate, EfaNodeTemplateArgs
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.grafana_content import GrafanaProviderFactory
from gpufleet.infra.image_cache import ImageCache, ImageCacheArgs
from gpufleet.infra.image_family import ImageFamily
from gpufleet.infra.lustre_storage import LustreStorage, LustreStorageArgs
from gpufleet.infra.metrics_forwarding import (
    FsxAlarm,
    HostAlarm,
    MetricsForwarding,
    MetricsForwardingArgs,
    NodeGroupAlarm,
)
from gpufleet.infra.model import ClusterKind, NodeGroupSpec, RamSharing, Role, StackSpec
from gpufleet.infra.monitoring import Monitoring, MonitoringArgs
from gpufleet.infra.network import Network, NetworkArgs
from gpufleet.infra.node_image import NodeImages, NodeImagesArgs
from gpufleet.infra.rebalance_journal import RebalanceJournal, RebalanceJournalArgs
from gpufleet.infra.scheduler_function import SchedulerFunction, SchedulerFunctionArgs
from gpufleet.infra.stack_config import stack_file_text
from gpufleet.infra.stackfile import NS

if TYPE_CHECKING:
    from gpufleet.infra.eks_composition import KubernetesProviderFactory


@dataclass(frozen=True, kw_only=True)
class PlatformOutputs:
    """What a consumer stack reads from the platform stack (through a StackReference)."""

    pools: pulumi.Input[Sequence[PoolOutput]]
    """The platform's pools."""
    automation_role_arn: pulumi.Input[str | None] = None
    """The one principal a consumer's operator role trusts."""
    monitoring: pulumi.Input[MonitoringOutput | None] = None
    """The central monitoring: remote write URL and role, workspace."""
    node_images: pulumi.Input[Sequence[NodeImageOutput]] = ()
    """The node images the platform shares (one per cluster kind)."""
    ram_sharing: pulumi.Input[str | None] = None
    """How the platform shares its pools (organization | invitation); None: an older platform."""
    registry: pulumi.Input[str] = ""
    """The platform's ECR registry host (its image cache and chart repositories)."""

    @classmethod
    def of(cls, outputs: pulumi.Output[StackOutputs]) -> PlatformOutputs:
        """From the platform's outputs read through the contract."""
        return cls(pools=outputs.apply(lambda o: list(o.pools)),
                   automation_role_arn=outputs.apply(lambda o: o.automation_role_arn),
                   monitoring=outputs.apply(lambda o: o.monitoring),
                   node_images=outputs.apply(lambda o: list(o.node_images)),
                   ram_sharing=outputs.apply(lambda o: o.ram_sharing),
                   registry=outputs.apply(lambda o: registry_mirror.registry_host(o.account_id, o.region)))


@dataclass(frozen=True, kw_only=True)
class NodeGroupBinding:
    """One node group of a consumer stack, with what a cluster plugin needs to run it."""

    spec: NodeGroupSpec
    """The node group from the stack file."""
    template: EfaNodeTemplate
    """Its launch template, security group and placement group."""
    subnet_id: pulumi.Output[str]
    """The private subnet in the AZ ID of the group's pool."""
    pool_kind: pulumi.Input[str] = "odcr"
    """Kind of the group's pool (odcr, capacity-block, on-demand)."""


@dataclass(frozen=True, kw_only=True)
class BuiltNodeGroups:
    """What a cluster plugin made of the node templates."""

    node_groups: tuple[NodeGroupOutput, ...]
    """One per node group of the stack file, in its order."""
    cluster: ClusterOutput | None = None
    """The cluster the groups join (None for plain Auto Scaling groups)."""


@dataclass(frozen=True, kw_only=True)
class ClusterSetup:
    """What a cluster built before its node templates hands to them (``ClusterPlugin.prepare``)."""

    node_security_group_ids: Sequence[pulumi.Input[str]] = ()
    """Security groups every GPU node carries besides its EFA group (e.g. the EKS cluster's)."""
    node_image_id: pulumi.Input[str] | None = None
    """Image of the node templates; None: the node group picks it (EKS AMI types)."""
    node_image_family: ImageFamily = ImageFamily.UBUNTU_DLAMI
    """Family of that image (the root device name follows it)."""
    build_node_groups: Callable[[Sequence[NodeGroupBinding], StorageOutput | None], BuiltNodeGroups]
    """Creates the node groups on the templates, given the stack's storage (or None)."""
    node_user_data: Callable[[NodeGroupSpec], pulumi.Input[str]] | None = None
    """Base64 user data of a group's nodes (Slurm: fetch the bundle, join); None: the plugin's."""
    node_instance_profile_arn: pulumi.Input[str] | None = None
    """Instance profile of the GPU nodes (Slurm nodes read their bundle and the munge key)."""
    collector_principal_arns: Sequence[pulumi.Input[str]] = ()
    """Roles that run a metrics collector and so may assume the account's collector role (the
    Slurm head's instance role)."""


@dataclass(frozen=True, kw_only=True)
class ClusterPlugin:
    """How one cluster kind runs GPU nodes."""

    orchestrator: str
    """``NodeGroupOutput.orchestrator`` of the groups (slurm, eks, none)."""
    imds_hop_limit: int = 1
    """1 everywhere today: EKS pods get AWS credentials from Pod Identity, not from the node."""
    user_data: Callable[[StackSpec, NodeGroupSpec], pulumi.Input[str] | None] = lambda spec, group: None
    """Base64 user data for a group's nodes."""
    prepare: Callable[[StackSpec, Network, pulumi.Input[str | None], pulumi.ResourceOptions,
                       KubernetesProviderFactory | None, PlatformOutputs], ClusterSetup] | None = None
    """Builds the cluster before the node templates (given the stack's operator role, its
    Kubernetes provider factory and the platform's outputs); its ``build_node_groups`` makes the
    node groups. None: plain Auto Scaling groups."""


def stack_tags(spec: StackSpec) -> dict[str, str]:
    """Tags naming the stack; the provider's default tags, and set on Auto Scaling groups by hand
    (default tags never reach an Auto Scaling group; the operator's IAM conditions read them)."""
    return {"gpufleet:stack": spec.name, "gpufleet:role": spec.role.value}


def plain_asg_node_groups(spec: StackSpec, bindings: Sequence[NodeGroupBinding],
                          opts: pulumi.ResourceOptions, orchestrator: str = "none") -> BuiltNodeGroups:
    groups = []
    for binding in bindings:
        group = binding.spec
        asg = AsgNodeGroup(group.name, AsgNodeGroupArgs(
            node_group=group, launch_template_id=binding.template.launch_template_id,
            launch_template_version=binding.template.launch_template_version.apply(str),
            subnet_id=binding.subnet_id, orchestrator=orchestrator, tags=stack_tags(spec)), opts=opts)
        groups.append(node_group_output(group, asg.asg_name, asg.asg_tags, orchestrator))
    return BuiltNodeGroups(node_groups=tuple(groups))


def node_group_output(group: NodeGroupSpec, asg_name: pulumi.Input[str], asg_tags: pulumi.Input[Mapping[str, str]],
                      orchestrator: str, cluster: pulumi.Input[str] | None = None) -> NodeGroupOutput:
    """A node group's entry of the contract: the stack file's bounds, the real group's name and tags."""
    return NodeGroupOutput(name=group.name, pool=group.pool, instance_type=group.instance_type,
                           asg_name=asg_name, asg_tags=asg_tags, min_nodes=group.min_nodes,  # type: ignore[arg-type]
                           max_nodes=group.max_nodes, initial_nodes=group.initial_nodes,
                           orchestrator=orchestrator, cluster=cluster, lent_reservation_id=group.lent_reservation_id)


def prepare_eks(*args: Any, **kwargs: Any) -> ClusterSetup:
    # pulumi_eks pulls in pulumi_kubernetes (over a second of imports): only EKS stacks pay for it,
    # and in an offline plan they pay in their own render worker, off the critical path.
    from gpufleet.infra.eks_composition import prepare_eks as prepare

    return prepare(*args, **kwargs)


def prepare_slurm(*args: Any, **kwargs: Any) -> ClusterSetup:
    from gpufleet.infra.slurm_composition import prepare_slurm as prepare

    return prepare(*args, **kwargs)


CLUSTER_PLUGINS: dict[ClusterKind, ClusterPlugin] = {
    ClusterKind.NONE: ClusterPlugin(orchestrator="none"),
    ClusterKind.EKS: ClusterPlugin(orchestrator="eks", prepare=prepare_eks),
    ClusterKind.SLURM: ClusterPlugin(orchestrator="slurm", prepare=prepare_slurm),
}


def compose(spec: StackSpec, platform_outputs: PlatformOutputs | None = None,
            opts: pulumi.ResourceOptions | None = None,
            kubernetes_provider: KubernetesProviderFactory | None = None,
            grafana_provider: GrafanaProviderFactory | None = None) -> StackOutputs:
    """Create the stack's components by role and return its outputs (not yet exported).
    ``grafana_provider``: the platform provisions its Grafana data sources and dashboard with it."""
    opts = opts or pulumi.ResourceOptions()
    callers = reachability.callers_of(spec.cluster_kind, holds_phi=spec.holds_phi,
                                      is_platform=spec.role is Role.PLATFORM, heals=heals(spec))
    services = reachability.services_of(callers)
    network = Network("network", NetworkArgs(
        cidr=spec.network.cidr, az_ids=spec.az_ids, region=spec.region, account_id=spec.account_id,
        enable_nat=spec.network.enable_nat,
        interface_services=tuple(s for s in services if s not in reachability.GATEWAY_SERVICES),
        gateway_services=tuple(s for s in services if s in reachability.GATEWAY_SERVICES and s != "s3"),
        endpoint_principal_accounts=_platform_principal_accounts(platform_outputs)), opts=opts)
    baseline = _baseline(spec, platform_outputs, opts)
    common: dict[str, Any] = dict(
        role=spec.role.value, account_id=spec.account_id, region=spec.region, vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids, operator_role_arn=baseline.operator_role_arn,
        external_id=baseline.external_id, automation_role_arn=baseline.automation_role_arn,
        release_bucket=baseline.release_bucket)
    if spec.role is Role.PLATFORM:
        return StackOutputs(**common, **_platform(spec, opts, grafana_provider))
    if platform_outputs is None:
        raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                          "a consumer stack needs the platform stack's outputs")
    return StackOutputs(**common, **_consumer(spec, network, platform_outputs, opts, baseline.operator_role_arn,
                                              kubernetes_provider))


def heals(spec: StackSpec) -> bool:
    """The stack runs its own healer: a training stack's Slurm head (its archive in the bundle), or
    its EKS cluster's Deployment once an image is named (infra/eks_composition.py)."""
    if spec.role is not Role.TRAINING:
        return False
    return spec.cluster_kind is ClusterKind.SLURM or (spec.cluster_kind is ClusterKind.EKS and bool(spec.healer_image))


def _account_of(arn: str | None) -> str:
    """The account of an IAM ARN; '' for anything else (the guardrails judge a bad value)."""
    parts = (arn or "").split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else ""


def _platform_principal_accounts(platform: PlatformOutputs | None) -> tuple[pulumi.Output[str], ...]:
    """The platform account, whose remote-write role the consumer's metrics collector assumes and
    then calls aps-workspaces as, and whose healer journal role a healer writes the journal as
    (through this VPC's endpoints)."""
    if platform is None:
        return ()
    accounts: list[pulumi.Output[str]] = []
    if platform.monitoring is not None:
        accounts.append(pulumi.Output.from_input(platform.monitoring).apply(
            lambda m: m.remote_write_role_arn.split(":")[4] if m is not None and m.remote_write_role_arn else ""))
    if platform.automation_role_arn is not None:
        accounts.append(pulumi.Output.from_input(platform.automation_role_arn).apply(_account_of))
    return tuple(accounts)


def _baseline(spec: StackSpec, platform: PlatformOutputs | None, opts: pulumi.ResourceOptions) -> AccountBaseline:
    """Keys, CloudTrail, encryption by default, no public S3; the operator or automation role."""
    if spec.role is Role.PLATFORM:
        args = AccountBaselineArgs(stack=spec.name, role=spec.role, account_id=spec.account_id, region=spec.region,
                                   consumer_accounts=dict(spec.consumer_accounts))
    else:
        if platform is None:
            raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                              "a consumer stack needs the platform stack's outputs")
        args = AccountBaselineArgs(stack=spec.name, role=spec.role, account_id=spec.account_id, region=spec.region,
                                   automation_role_arn=platform.automation_role_arn,
                                   node_group_names=tuple(g.name for g in spec.node_groups),
                                   eks_node_groups=spec.cluster_kind is ClusterKind.EKS,
                                   slurm_head=spec.cluster_kind is ClusterKind.SLURM,
                                   # No SSM in a PHI account (no endpoint): its probe runs in the orchestrator.
                                   enable_ssm_probe=not (spec.holds_phi or spec.role is Role.INFERENCE))
    return AccountBaseline("baseline", args, opts=opts)


def _platform(spec: StackSpec, opts: pulumi.ResourceOptions,
              grafana_provider: GrafanaProviderFactory | None = None) -> dict[str, Any]:
    pools = []
    for pool in spec.pools:
        component = CapacityPool(pool.name, CapacityPoolArgs(
            pool=pool, account_id=spec.account_id, region=spec.region,
            consumer_account_ids=tuple(spec.consumer_accounts[role] for role in pool.share_with),
            ram_sharing=spec.ram_sharing), opts=opts)
        pools.append(PoolOutput(name=pool.name, instance_type=pool.instance_type, az_id=pool.az_id,
                                kind=pool.kind.value, count=pool.count,
                                start_time=pool.start_time, end_time=pool.end_time,
                                reservation_id=component.reservation_id,  # type: ignore[arg-type]
                                reservation_arn=component.reservation_arn,  # type: ignore[arg-type]
                                share_arn=component.share_arn,  # type: ignore[arg-type]
                                price_usd_per_hour=pool.price_usd_per_hour,
                                unused_billed_to=pool.unused_billed_to.value if pool.unused_billed_to else None,
                                unused_billing_owner_id=(spec.consumer_accounts[pool.unused_billed_to]
                                                         if pool.unused_billed_to else None),
                                spares=pool.spares))
    ImageCache("image-cache", ImageCacheArgs(
        account_id=spec.account_id, region=spec.region, consumer_account_ids=tuple(spec.consumer_accounts.values()),
        charts=registry_mirror.MIRRORED_CHARTS), opts=opts)
    journal = RebalanceJournal("rebalance-journal", RebalanceJournalArgs(
        account_id=spec.account_id, region=spec.region), opts=opts)
    monitoring = Monitoring("monitoring", MonitoringArgs(
        account_id=spec.account_id, region=spec.region,
        consumer_account_ids=tuple(spec.consumer_accounts.values()), grafana_provider=grafana_provider),
        opts=opts)
    images = NodeImages("node-images", NodeImagesArgs(
        account_id=spec.account_id, region=spec.region,
        consumer_account_ids=tuple(spec.consumer_accounts.values())), opts=opts)
    if spec.schedule:
        SchedulerFunction("scheduler", SchedulerFunctionArgs(
            account_id=spec.account_id, region=spec.region, consumer_account_ids=tuple(spec.consumer_accounts.values()),
            journal_table_arn=journal.table_arn, journal_key_arn=journal.key_arn,
            alarm_topic_arn=monitoring.alerts_topic_arn, fleet_files=scheduler_fleet_files(spec)), opts=opts)
    node_images = tuple(NodeImageOutput(kind=kind.value, ami_id=ami, version=images.versions[kind],  # type: ignore[arg-type]
                                        parameter_name=images.parameter_names[kind])
                        for kind, ami in images.ami_ids.items())
    return {"pools": tuple(pools), "ram_sharing": spec.ram_sharing.value, "journal_table": journal.table_name,
            "node_images": node_images,
            "monitoring": MonitoringOutput(
        workspace_id=monitoring.workspace_id, remote_write_url=monitoring.remote_write_url,  # type: ignore[arg-type]
        remote_write_role_arn=monitoring.remote_write_role_arn,  # type: ignore[arg-type]
        alerts_topic_arn=monitoring.alerts_topic_arn,  # type: ignore[arg-type]
        grafana_endpoint=monitoring.grafana_endpoint,  # type: ignore[arg-type]
        grafana_workspace_id=monitoring.grafana_workspace_id)}  # type: ignore[arg-type]


SCHEDULER_INVENTORY = Path(".gpufleet/inventory.json")
"""Where `gpufleet inventory collect` writes the fleet's outputs, relative to the project root."""
MAX_PROJECT_DEPTH = 16


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder holding Pulumi.yaml, from the working directory up (Pulumi's own rule for
    the current project), so the answer is the same whether the CLI runs the program from the
    project root or from ``main``."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents][:MAX_PROJECT_DEPTH]:
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return None


def scheduler_fleet_files(spec: StackSpec, root: Path | None = None) -> dict[str, str]:
    """What the scheduler function reads: the platform's stack file (rebuilt from the validated
    spec) and the collected inventory. The inventory goes in the archive rather than a bucket so
    the function's role reads no bucket; `inventory collect` then `pulumi up` on the platform
    refreshes it. Without one (the platform's first deployment, before the consumers exist) every
    pass fails with a ConfigError naming the missing file, and the function's Errors alarm fires."""
    files = {f"stacks/Pulumi.{spec.name}.yaml": stack_file_text(spec)}
    root = root or project_root()
    inventory = root / SCHEDULER_INVENTORY if root is not None else None
    if inventory is not None and inventory.is_file():
        files["inventory.json"] = inventory.read_text(encoding="utf-8")
    else:
        pulumi.log.warn(f"{inventory or SCHEDULER_INVENTORY}: no inventory; the scheduler function fails until "
                        "`gpufleet inventory collect` and `pulumi up` on this stack package one")
    return files


def _pool_lookup(spec: StackSpec, index: int, group: NodeGroupSpec, pools: Sequence[PoolOutput]) -> PoolOutput:
    for pool in pools:
        if pool.name == group.pool:
            if pool.az_id not in spec.az_ids:
                raise ConfigError(spec.source, f"{NS}:azIds", list(spec.az_ids),
                                  f"pool {group.pool} is in {pool.az_id}; the stack needs a subnet there")
            return pool
    raise ConfigError(spec.source, f"{NS}:nodeGroups[{index}].pool", group.pool,
                      f"no such pool in the outputs of {spec.platform_stack}")


def _check_ram_sharing(spec: StackSpec, mode: str | None) -> bool:
    """The platform shares its pools the way this stack file says (None: an older platform)."""
    if mode is not None and mode != spec.ram_sharing.value:
        raise ConfigError(spec.source, f"{NS}:ramSharing", spec.ram_sharing.value,
                          f"the platform stack {spec.platform_stack} shares its pools by {mode}",
                          f"set {NS}:ramSharing: {mode} in every stack file of the fleet")
    return True


def _accept_shares(spec: StackSpec, pools: pulumi.Output[Sequence[PoolOutput]],
                   opts: pulumi.ResourceOptions) -> dict[str, list[pulumi.Resource]]:
    """``ramSharing: invitation``: accept the share of every pool the stack's node groups use, from
    the platform's outputs (the invitation the platform's principal association sent)."""
    if spec.ram_sharing is not RamSharing.INVITATION:
        return {}

    def share_of(pool_name: str, index: int) -> Callable[[Sequence[PoolOutput]], str]:
        def find(outputs: Sequence[PoolOutput]) -> str:
            pool = next((p for p in outputs if p.name == pool_name), None)
            if pool is None or not pool.share_arn:
                raise ConfigError(spec.source, f"{NS}:nodeGroups[{index}].pool", pool_name,
                                  f"{spec.platform_stack} exports no RAM share for this pool (on-demand, or "
                                  "not shared with this account): nothing to accept")
            return pool.share_arn
        return find

    accepted: dict[str, list[pulumi.Resource]] = {}
    for index, group in enumerate(spec.node_groups):
        if group.pool in accepted:
            continue
        share_arn = pools.apply(share_of(group.pool, index))
        accepted[group.pool] = [ram.ResourceShareAccepter(f"{group.pool}-share-accepter", share_arn=share_arn,
                                                          opts=opts)]
    return accepted


def _consumer(spec: StackSpec, network: Network, platform: PlatformOutputs, opts: pulumi.ResourceOptions,
              operator_role_arn: pulumi.Input[str | None] = None,
              kubernetes_provider: KubernetesProviderFactory | None = None) -> dict[str, Any]:
    plugin = CLUSTER_PLUGINS[spec.cluster_kind]
    setup = (plugin.prepare(spec, network, operator_role_arn, opts, kubernetes_provider, platform)
             if plugin.prepare is not None else None)
    template_extras: dict[str, Any] = {}
    if setup is not None:
        template_extras = {"extra_security_group_ids": tuple(setup.node_security_group_ids),
                           "image_id": setup.node_image_id,
                           "image_family": setup.node_image_family,
                           "iam_instance_profile_arn": setup.node_instance_profile_arn}
    ebs_key = EncryptionKey("node-volumes-key", EncryptionKeyArgs(
        description=f"{spec.name}: GPU node root volumes", account_id=spec.account_id, region=spec.region,
        services=(KeyService.AUTOSCALING,)), opts=opts)
    # Every pool lookup goes through the sharing-mode check, so a mismatch fails the deployment.
    platform_pools = pulumi.Output.all(platform.pools, platform.ram_sharing).apply(
        lambda a: _check_ram_sharing(spec, a[1]) and a[0])
    accepted = _accept_shares(spec, platform_pools, opts)
    bindings = []
    for index, group in enumerate(spec.node_groups):
        pool = platform_pools.apply(lambda pools, i=index, g=group: _pool_lookup(spec, i, g, pools))
        template = EfaNodeTemplate(group.name, EfaNodeTemplateArgs(
            instance_type=group.instance_type, vpc_id=network.vpc_id, vpc_cidr=network.cidr,
            s3_prefix_list_id=network.s3_prefix_list_id, ebs_kms_key_arn=ebs_key.arn,
            # A group in lent slots targets the interruptible reservation by id: EC2 makes it a
            # targeted reservation, which no launch matches unless it names it (EC2 User Guide,
            # "Interruptible Capacity Reservations for capacity consumers").
            capacity_reservation_id=(group.lent_reservation_id if group.lent_reservation_id
                                     else pool.apply(lambda p: p.reservation_id)),
            pool_kind=pool.apply(lambda p: p.kind),
            enable_placement_group=group.enable_placement_group,
            enable_lustre_client=spec.storage is not None,
            enable_internet_egress=spec.network.enable_nat,
            user_data=(setup.node_user_data(group) if setup is not None and setup.node_user_data is not None
                       else plugin.user_data(spec, group)),
            imds_hop_limit=plugin.imds_hop_limit,
            **template_extras),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=accepted.get(group.pool, []))))
        subnet_id = pool.apply(lambda p: network.private_subnet_ids[p.az_id])
        bindings.append(NodeGroupBinding(spec=group, template=template, subnet_id=subnet_id,
                                         pool_kind=pool.apply(lambda p: p.kind)))

    storage: StorageOutput | None = None
    if spec.storage is not None:
        # PERSISTENT_2 lives in one subnet: the AZ of the first GPU group, where the traffic is.
        subnet_id = bindings[0].subnet_id if bindings else network.private_subnet_ids[spec.az_ids[0]]
        lustre = LustreStorage("storage", LustreStorageArgs(
            vpc_id=network.vpc_id, subnet_id=subnet_id, account_id=spec.account_id, region=spec.region,
            fsx_capacity_gib=spec.storage.fsx_capacity_gib,
            fsx_throughput_per_tib=spec.storage.fsx_throughput_per_tib,
            fsx_import_prefix=spec.storage.fsx_import_prefix,
            client_security_group_ids=[b.template.security_group_id for b in bindings]), opts=opts)
        storage = StorageOutput(file_system_id=lustre.file_system_id, dns_name=lustre.dns_name,  # type: ignore[arg-type]
                                mount_name=lustre.mount_name, mount_path=spec.storage.fsx_mount_path,  # type: ignore[arg-type]
                                bucket_name=lustre.bucket_name)  # type: ignore[arg-type]

    built = (setup.build_node_groups(bindings, storage) if setup is not None
             else plain_asg_node_groups(spec, bindings, opts, plugin.orchestrator))
    gate = spec.health_gate
    health_gate = HealthGateOutput(probe=gate.probe.value, tiers=gate.tiers, dcgm_level=gate.dcgm_level,
                                   straggler_fail_pct=gate.straggler_fail_pct, ssm_allowed=not spec.holds_phi)
    return {"node_groups": built.node_groups, "cluster": built.cluster, "storage": storage, "health_gate": health_gate,
            "metrics": _metrics_forwarding(spec, platform, built, storage, opts,
                                           setup.collector_principal_arns if setup is not None else ())}


def platform_monitoring(spec: StackSpec, monitoring: MonitoringOutput | None) -> MonitoringOutput:
    """The platform's monitoring export, which every consumer's collectors need."""
    if monitoring is None:
        raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                          "the platform stack exports no monitoring.remoteWriteRoleArn",
                          "run `pulumi up` on the platform stack first")
    return monitoring


def _metrics_forwarding(spec: StackSpec, platform: PlatformOutputs, built: BuiltNodeGroups,
                        storage: StorageOutput | None, opts: pulumi.ResourceOptions,
                        collector_principal_arns: Sequence[pulumi.Input[str]] = ()) -> MetricsOutput:
    """The collector role that remote-writes to the platform's Prometheus, and CloudWatch alarms."""
    def remote_write_role(monitoring: MonitoringOutput | None) -> str:
        return platform_monitoring(spec, monitoring).remote_write_role_arn

    cluster = built.cluster
    forwarding = MetricsForwarding("metrics", MetricsForwardingArgs(
        account_id=spec.account_id, region=spec.region,
        eks_cluster_name=cluster.name if cluster is not None and cluster.kind == "eks" else None,
        remote_write_role_arn=pulumi.Output.from_input(platform.monitoring).apply(remote_write_role),
        collector_principal_arns=tuple(collector_principal_arns),
        node_groups=tuple(NodeGroupAlarm(name=g.name, asg_name=g.asg_name) for g in built.node_groups),
        hosts=((HostAlarm(name="slurm-head", instance_id=cluster.head_instance_id),)
               if cluster is not None and cluster.kind == "slurm" and cluster.head_instance_id is not None else ()),
        fsx=(FsxAlarm(file_system_id=storage.file_system_id, capacity_gib=spec.storage.fsx_capacity_gib)
             if storage is not None and spec.storage is not None else None)), opts=opts)
    return MetricsOutput(collector_role_arn=forwarding.collector_role_arn,  # type: ignore[arg-type]
                         alarms_topic_arn=forwarding.alarms_topic_arn)  # type: ignore[arg-type]

"""Composition: which components a stack gets, by its role, and what it exports.

``compose`` is called by stacks/__main__.py (the only place providers are built) with options that
carry the stack's provider; every component inherits it. The exports follow the contract in
automation/inventory.py.

Cluster kinds plug in through ``CLUSTER_PLUGINS``: a plugin chooses the node user data and IMDS
hop limit, and turns the node templates into node groups. A plugin with ``prepare`` builds its
cluster first (EKS: every node carries the cluster's security group) and then its node groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from gpufleet.infra.account_baseline import AccountBaseline, AccountBaselineArgs
from gpufleet.infra.asg_node_group import AsgNodeGroup, AsgNodeGroupArgs
from gpufleet.infra.capacity_pool import CapacityPool, CapacityPoolArgs
from gpufleet.infra.efa_node_template import EfaNodeTemplate, EfaNodeTemplateArgs
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.lustre_storage import LustreStorage, LustreStorageArgs
from gpufleet.infra.metrics_forwarding import (
    FsxAlarm,
    MetricsForwarding,
    MetricsForwardingArgs,
    NodeGroupAlarm,
)
from gpufleet.infra.monitoring import Monitoring, MonitoringArgs
from gpufleet.infra.network import Network, NetworkArgs
from gpufleet.infra.rebalance_journal import RebalanceJournal, RebalanceJournalArgs
from gpufleet.infra.stackfile import NS, ClusterKind, NodeGroupSpec, Role, StackSpec

if TYPE_CHECKING:
    from gpufleet.infra.eks_composition import KubernetesProviderFactory


@dataclass(frozen=True, kw_only=True)
class PlatformOutputs:
    """What a consumer stack reads from the platform stack (through a StackReference)."""

    pools: pulumi.Input[Sequence[Mapping[str, Any]]]
    """The platform's ``pools`` export: [{name, instanceType, azId, count, kind, reservationId}]."""
    automation_role_arn: pulumi.Input[str | None] = None
    """The platform's ``automationRoleArn`` export: the one principal a consumer's operator role trusts."""
    monitoring: pulumi.Input[Mapping[str, Any] | None] = None
    """The platform's ``monitoring`` export: remoteWriteUrl, remoteWriteRoleArn, workspaceId."""


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
class ClusterSetup:
    """What a cluster built before its node templates hands to them (``ClusterPlugin.prepare``)."""

    node_security_group_ids: Sequence[pulumi.Input[str]] = ()
    """Security groups every GPU node carries besides its EFA group (e.g. the EKS cluster's)."""
    node_image_id: pulumi.Input[str] | None = None
    """Image of the node templates; None: the node group picks it (EKS AMI types)."""
    build_node_groups: Callable[[Sequence[NodeGroupBinding], Mapping[str, Any] | None], dict[str, Any]]
    """Creates the node groups on the templates, given the ``storage`` export (or None); returns
    exports (at least ``nodeGroups``)."""
    node_user_data: Callable[[NodeGroupSpec], pulumi.Input[str]] | None = None
    """Base64 user data of a group's nodes (Slurm: fetch the bundle, join); None: the plugin's."""
    node_instance_profile_arn: pulumi.Input[str] | None = None
    """Instance profile of the GPU nodes (Slurm nodes read their bundle and the munge key)."""


@dataclass(frozen=True, kw_only=True)
class ClusterPlugin:
    """How one cluster kind runs GPU nodes."""

    orchestrator: str
    """Value of ``orchestrator`` in the nodeGroups export (slurm, eks, none)."""
    imds_hop_limit: int = 1
    """2 where containers in their own network namespace must reach IMDS (EKS pods)."""
    user_data: Callable[[StackSpec, NodeGroupSpec], pulumi.Input[str] | None] = lambda spec, group: None
    """Base64 user data for a group's nodes."""
    build_node_groups: Callable[
        [StackSpec, Network, Sequence[NodeGroupBinding], pulumi.ResourceOptions],
        list[Mapping[str, Any]]] | None = None
    """Creates the node groups and returns their exports; None: plain Auto Scaling groups."""
    prepare: Callable[[StackSpec, Network, Mapping[str, Any], pulumi.ResourceOptions,
                       KubernetesProviderFactory | None, PlatformOutputs], ClusterSetup] | None = None
    """Builds the cluster before the node templates (given the exports so far, the stack's
    Kubernetes provider factory and the platform's outputs); when set, its ``build_node_groups``
    makes the node groups."""


def plain_asg_node_groups(spec: StackSpec, network: Network, bindings: Sequence[NodeGroupBinding],
                          opts: pulumi.ResourceOptions, orchestrator: str = "none") -> list[Mapping[str, Any]]:
    exports = []
    for binding in bindings:
        group = binding.spec
        asg = AsgNodeGroup(group.name, AsgNodeGroupArgs(
            launch_template_id=binding.template.launch_template_id,
            launch_template_version=binding.template.launch_template_version.apply(str),
            subnet_id=binding.subnet_id, min_nodes=group.min_nodes, max_nodes=group.max_nodes,
            num_nodes=group.num_nodes, orchestrator=orchestrator), opts=opts)
        exports.append(node_group_export(group, asg.asg_name, orchestrator, asg.asg_tags))
    return exports


def node_group_export(group: NodeGroupSpec, asg_name: pulumi.Input[str], orchestrator: str,
                      asg_tags: pulumi.Input[Mapping[str, str]]) -> dict[str, Any]:
    """One entry of the ``nodeGroups`` export (contract: gpufleet.infra.contract.NodeGroupOutput)."""
    return {"name": group.name, "pool": group.pool, "instanceType": group.instance_type, "asgName": asg_name,
            "asgTags": asg_tags, "minNodes": group.min_nodes, "maxNodes": group.max_nodes,
            "initialNodes": group.num_nodes, "orchestrator": orchestrator}


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
    ClusterKind.EKS: ClusterPlugin(orchestrator="eks", imds_hop_limit=2, prepare=prepare_eks),
    ClusterKind.SLURM: ClusterPlugin(orchestrator="slurm", prepare=prepare_slurm),
}


def compose(spec: StackSpec, platform_outputs: PlatformOutputs | None = None,
            opts: pulumi.ResourceOptions | None = None,
            kubernetes_provider: KubernetesProviderFactory | None = None) -> dict[str, Any]:
    """Create the stack's components by role and return its exports (not yet exported)."""
    opts = opts or pulumi.ResourceOptions()
    exports: dict[str, Any] = {"role": spec.role.value, "accountId": spec.account_id,
                               "region": spec.region, "operatorRoleArn": None}
    network = Network("network", NetworkArgs(
        cidr=spec.network.cidr, az_ids=spec.az_ids, region=spec.region, account_id=spec.account_id,
        enable_nat=spec.network.enable_nat), opts=opts)
    exports["vpcId"] = network.vpc_id
    exports["privateSubnetIds"] = network.private_subnet_ids
    exports.update(_baseline(spec, platform_outputs, opts).exports)
    if spec.role is Role.PLATFORM:
        exports.update(_platform(spec, opts))
    else:
        if platform_outputs is None:
            raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                              "a consumer stack needs the platform stack's outputs")
        exports.update(_consumer(spec, network, platform_outputs, opts, exports, kubernetes_provider))
    return exports


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
                                   node_group_names=tuple(g.name for g in spec.node_groups))
    return AccountBaseline("baseline", args, opts=opts)


def _platform(spec: StackSpec, opts: pulumi.ResourceOptions) -> dict[str, Any]:
    pools = []
    for pool in spec.pools:
        component = CapacityPool(pool.name, CapacityPoolArgs(
            instance_type=pool.instance_type, az_id=pool.az_id, count=pool.count, kind=pool.kind,
            account_id=spec.account_id, region=spec.region, reservation_id=pool.reservation_id,
            consumer_account_ids=tuple(spec.consumer_accounts[role] for role in pool.share_with)), opts=opts)
        pools.append({"name": pool.name, "instanceType": pool.instance_type, "azId": pool.az_id,
                      "count": pool.count, "kind": pool.kind.value, "reservationId": component.reservation_id,
                      "reservationArn": component.reservation_arn})
    journal = RebalanceJournal("rebalance-journal", RebalanceJournalArgs(
        account_id=spec.account_id, region=spec.region), opts=opts)
    monitoring = Monitoring("monitoring", MonitoringArgs(
        account_id=spec.account_id, region=spec.region,
        consumer_account_ids=tuple(spec.consumer_accounts.values())), opts=opts)
    return {"pools": pools, "journalTable": journal.table_name, "monitoring": {
        "workspaceId": monitoring.workspace_id, "remoteWriteUrl": monitoring.remote_write_url,
        "remoteWriteRoleArn": monitoring.remote_write_role_arn, "alertsTopicArn": monitoring.alerts_topic_arn,
        "grafanaEndpoint": monitoring.grafana_endpoint, "grafanaWorkspaceId": monitoring.grafana_workspace_id}}


def _pool_lookup(spec: StackSpec, index: int, group: NodeGroupSpec,
                 pools: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    for pool in pools:
        if pool.get("name") == group.pool:
            if pool.get("azId") not in spec.az_ids:
                raise ConfigError(spec.source, f"{NS}:azIds", list(spec.az_ids),
                                  f"pool {group.pool} is in {pool.get('azId')}; the stack needs a subnet there")
            return pool
    raise ConfigError(spec.source, f"{NS}:nodeGroups[{index}].pool", group.pool,
                      f"no such pool in the outputs of {spec.platform_stack}")


def _consumer(spec: StackSpec, network: Network, platform: PlatformOutputs,
              opts: pulumi.ResourceOptions, exports_so_far: Mapping[str, Any] | None = None,
              kubernetes_provider: KubernetesProviderFactory | None = None) -> dict[str, Any]:
    plugin = CLUSTER_PLUGINS[spec.cluster_kind]
    setup = (plugin.prepare(spec, network, exports_so_far or {}, opts, kubernetes_provider, platform)
             if plugin.prepare is not None else None)
    template_extras: dict[str, Any] = {}
    if setup is not None:
        template_extras = {"extra_security_group_ids": tuple(setup.node_security_group_ids),
                           "image_id": setup.node_image_id,
                           "iam_instance_profile_arn": setup.node_instance_profile_arn}
    ebs_key = EncryptionKey("node-volumes-key", EncryptionKeyArgs(
        description=f"{spec.name}: GPU node root volumes", account_id=spec.account_id, region=spec.region,
        services=(KeyService.AUTOSCALING,)), opts=opts)
    platform_pools = pulumi.Output.from_input(platform.pools)
    bindings = []
    for index, group in enumerate(spec.node_groups):
        pool = platform_pools.apply(lambda pools, i=index, g=group: _pool_lookup(spec, i, g, pools))
        template = EfaNodeTemplate(group.name, EfaNodeTemplateArgs(
            instance_type=group.instance_type, vpc_id=network.vpc_id, vpc_cidr=network.cidr,
            s3_prefix_list_id=network.s3_prefix_list_id, ebs_kms_key_arn=ebs_key.arn,
            capacity_reservation_id=pool.apply(lambda p: p.get("reservationId")),
            pool_kind=pool.apply(lambda p: p.get("kind", "odcr")),
            enable_placement_group=group.enable_placement_group,
            enable_lustre_client=spec.storage is not None,
            user_data=(setup.node_user_data(group) if setup is not None and setup.node_user_data is not None
                       else plugin.user_data(spec, group)),
            imds_hop_limit=plugin.imds_hop_limit,
            **template_extras), opts=opts)
        subnet_id = pool.apply(lambda p: network.private_subnet_ids[p["azId"]])
        bindings.append(NodeGroupBinding(spec=group, template=template, subnet_id=subnet_id,
                                         pool_kind=pool.apply(lambda p: p.get("kind", "odcr"))))

    exports: dict[str, Any] = {}
    if spec.storage is not None:
        # PERSISTENT_2 lives in one subnet: the AZ of the first GPU group, where the traffic is.
        subnet_id = bindings[0].subnet_id if bindings else network.private_subnet_ids[spec.az_ids[0]]
        storage = LustreStorage("storage", LustreStorageArgs(
            vpc_id=network.vpc_id, subnet_id=subnet_id, account_id=spec.account_id, region=spec.region,
            fsx_capacity_gib=spec.storage.fsx_capacity_gib,
            fsx_throughput_per_tib=spec.storage.fsx_throughput_per_tib,
            fsx_import_prefix=spec.storage.fsx_import_prefix,
            client_security_group_ids=[b.template.security_group_id for b in bindings]), opts=opts)
        exports["storage"] = {"fileSystemId": storage.file_system_id, "dnsName": storage.dns_name,
                              "mountName": storage.mount_name, "mountPath": spec.storage.fsx_mount_path,
                              "bucketName": storage.bucket_name}

    if setup is not None:
        exports.update(setup.build_node_groups(bindings, exports.get("storage")))
    elif plugin.build_node_groups is not None:
        exports["nodeGroups"] = plugin.build_node_groups(spec, network, bindings, opts)
    else:
        exports["nodeGroups"] = plain_asg_node_groups(spec, network, bindings, opts, plugin.orchestrator)
    exports["metrics"] = _metrics_forwarding(spec, platform, exports, opts)
    return exports


def _metrics_forwarding(spec: StackSpec, platform: PlatformOutputs, exports: Mapping[str, Any],
                        opts: pulumi.ResourceOptions) -> dict[str, Any]:
    """The collector role that remote-writes to the platform's Prometheus, and CloudWatch alarms."""
    def remote_write_role(monitoring: Mapping[str, Any] | None) -> str:
        arn = (monitoring or {}).get("remoteWriteRoleArn")
        if not arn:
            raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                              "the platform stack exports no monitoring.remoteWriteRoleArn",
                              "run `pulumi up` on the platform stack first")
        return arn

    storage = exports.get("storage")
    cluster = exports.get("cluster") or {}
    forwarding = MetricsForwarding("metrics", MetricsForwardingArgs(
        account_id=spec.account_id, region=spec.region,
        eks_cluster_name=cluster.get("name") if cluster.get("kind") == "eks" else None,
        remote_write_role_arn=pulumi.Output.from_input(platform.monitoring).apply(remote_write_role),
        node_groups=tuple(NodeGroupAlarm(name=g["name"], asg_name=g["asgName"]) for g in exports["nodeGroups"]),
        fsx=(FsxAlarm(file_system_id=storage["fileSystemId"], capacity_gib=spec.storage.fsx_capacity_gib)
             if storage is not None and spec.storage is not None else None)), opts=opts)
    return {"collectorRoleArn": forwarding.collector_role_arn, "alarmsTopicArn": forwarding.alarms_topic_arn}

"""Cluster kind ``eks``: how a consumer stack's GPU node groups run on EKS.

The cluster is built before the node templates, because every GPU node must carry the cluster's
security group next to its EFA group (a launch template's interfaces name all their groups; EKS
adds none). Then one EksGpuNodeGroup per template, and the in-cluster workloads through the
Kubernetes provider the stack builds from the cluster's kubeconfig.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pulumi

from gpufleet.infra import catalog, eks_scheduling
from gpufleet.infra.contract import ClusterOutput, StorageOutput
from gpufleet.infra.eks_cluster import EksGpuCluster, EksGpuClusterArgs
from gpufleet.infra.eks_node_group import EksGpuNodeGroup, EksGpuNodeGroupArgs
from gpufleet.infra.image_family import ImageFamily
from gpufleet.infra.model import NodeGroupSpec, Role, StackSpec
from gpufleet.infra.node_bundle import NodeBundle, NodeBundleArgs
from gpufleet.infra.node_image import consumer_node_image
from gpufleet.infra.node_image_plan import ImageKind
from gpufleet.infra.slurm_plan import lifecycle_bucket_name
from gpufleet.lifecycle.bootstrap.nodeadm import render_eks_user_data
from gpufleet.lifecycle.bootstrap.user_data import NodeParams, NodeRole, UserDataParams

if TYPE_CHECKING:
    from gpufleet.infra.network import Network
    from gpufleet.infra.program import ClusterSetup, NodeGroupBinding, PlatformOutputs

KubernetesProviderFactory = Callable[[str, pulumi.Input[str]], pulumi.ProviderResource]
"""Builds a Kubernetes provider from (name, kubeconfig JSON); made in stacks/__main__.py."""


def cluster_name(spec: StackSpec) -> str:
    """One cluster per stack (and per account): ``gpufleet-<stack>``."""
    return f"gpufleet-{spec.name}"


def prepare_eks(spec: StackSpec, network: Network, operator_role_arn: pulumi.Input[str | None],
                opts: pulumi.ResourceOptions, kubernetes_provider: KubernetesProviderFactory | None,
                platform: PlatformOutputs | None = None) -> ClusterSetup:
    """Build the control plane; return what the node templates and node groups need."""
    from gpufleet.infra.program import (  # program imports this module
        BuiltNodeGroups,
        ClusterSetup,
        node_group_output,
    )

    cluster = EksGpuCluster("eks", EksGpuClusterArgs(
        cluster_name=cluster_name(spec), account_id=spec.account_id, region=spec.region,
        vpc_id=network.vpc_id, subnet_ids=list(network.private_subnet_ids.values()),
        holds_phi=spec.holds_phi, public_access_cidrs=spec.eks_public_access_cidrs,
        operator_role_arn=operator_role_arn, deploy_role_arn=spec.deploy_role_arn,
        tags={"gpufleet:stack": spec.name}), opts=opts)

    image_id = consumer_node_image(spec, ImageKind.EKS, platform.node_images if platform is not None else (), opts)
    bundle = NodeBundle("eks-bundle", NodeBundleArgs(
        bucket_name=lifecycle_bucket_name(spec), account_id=spec.account_id, region=spec.region,
        node_role_name=cluster.node_role.name,
        node_envs={g.name: node_params(spec, g) for g in spec.node_groups}), opts=opts)

    def node_user_data(group: NodeGroupSpec) -> pulumi.Output[str]:
        labels = eks_scheduling.gpu_node_labels(spec.role.value, group.pool, group.name)
        taints = [eks_scheduling.kubelet_taint(t) for t in eks_scheduling.GPU_NODE_TAINTS]
        bootstrap = UserDataParams(bundle_uri=bundle.bundle_uri, node_env_path=f"nodes/{group.name}.env",
                                   region=spec.region)
        return cluster.join.apply(lambda join: base64.b64encode(render_eks_user_data(
            join, bootstrap, labels=labels, taints=taints).encode()).decode())

    def build_node_groups(bindings: Sequence[NodeGroupBinding], storage: StorageOutput | None) -> BuiltNodeGroups:
        groups = []
        for binding in bindings:
            group = binding.spec
            node_group = EksGpuNodeGroup(group.name, EksGpuNodeGroupArgs(
                cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn, pool_role=spec.role,
                node_group=group, launch_template_id=binding.template.launch_template_id,
                launch_template_version=binding.template.launch_template_version.apply(str),
                subnet_id=binding.subnet_id, pool_kind=binding.pool_kind, ami_type=None),
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=bundle.objects)))
            groups.append(node_group_output(group, node_group.asg_name, node_group.asg_tags, "eks",
                                            cluster=cluster.cluster_name))
        if kubernetes_provider is not None:
            provider = kubernetes_provider(f"{cluster_name(spec)}-k8s", cluster.kubeconfig)
            workloads = _workloads(spec, cluster, storage, provider, [b.spec for b in bindings], platform)
            if spec.role is Role.TRAINING:
                _healer(spec, cluster, provider, workloads, platform, opts)
        return BuiltNodeGroups(node_groups=tuple(groups), cluster=ClusterOutput(
            kind="eks", name=cluster.cluster_name, endpoint_access=cluster.endpoint_access,  # type: ignore[arg-type]
            node_role_arn=cluster.node_role_arn))  # type: ignore[arg-type]

    return ClusterSetup(node_security_group_ids=(cluster.node_security_group_id,), node_image_id=image_id,
                        node_image_family=ImageFamily.AL2023_EKS_GPU, build_node_groups=build_node_groups,
                        node_user_data=node_user_data)


def node_params(spec: StackSpec, group: NodeGroupSpec) -> NodeParams:
    """node.env of an EKS GPU node (NodeBundle fills in the bundle version). No FSx mount: pods
    mount FSx through the CSI driver."""
    info = catalog.lookup(group.instance_type)
    return NodeParams(role=NodeRole.EKS_NODE, region=spec.region, bundle_version="",
                      node_group=group.name, instance_type=group.instance_type, num_gpus=info.gpus,
                      efa_interfaces=info.efa_interfaces)


def _healer(spec: StackSpec, cluster: EksGpuCluster, provider: pulumi.ProviderResource,
            workloads: pulumi.Resource, platform: PlatformOutputs | None, opts: pulumi.ResourceOptions) -> None:
    """The healer Deployment and its repository: training clusters only (as the Slurm head's: an
    inference account's healer has no way to the journal, docs/security.md)."""
    from gpufleet.infra.eks_healer import EksHealer, EksHealerArgs
    from gpufleet.infra.slurm_composition import collected_inventory, healer_roles

    EksHealer("eks-healer", EksHealerArgs(
        cluster_name=cluster.cluster_name, account_id=spec.account_id, region=spec.region,
        assume_role_arns=healer_roles(spec, platform), image=spec.healer_image,
        inventory_text=collected_inventory("the EKS healer") if spec.healer_image else None,
        tiers=spec.health_gate.tiers, depends_on=[workloads]),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[provider], depends_on=[cluster])))


def _workloads(spec: StackSpec, cluster: EksGpuCluster, storage: StorageOutput | None,
               provider: pulumi.ProviderResource, group_specs: Sequence[Any],
               platform: PlatformOutputs | None) -> pulumi.Resource:
    from gpufleet.infra.eks_workloads import (
        EksGpuWorkloads,
        EksGpuWorkloadsArgs,
        FsxVolume,
        GpuQueue,
        MetricsCollector,
    )

    fsx = None
    if storage is not None and spec.storage is not None:
        fsx = FsxVolume(file_system_id=storage.file_system_id, dns_name=storage.dns_name,
                        mount_name=storage.mount_name, capacity_gib=spec.storage.fsx_capacity_gib)
    queues = [GpuQueue(node_group=g.name, instance_type=g.instance_type, max_nodes=g.max_nodes)
              for g in group_specs] if spec.role.value == "training" else []
    collector = None
    if platform is not None and platform.monitoring is not None:
        monitoring = pulumi.Output.from_input(platform.monitoring)
        collector = MetricsCollector(
            account_id=spec.account_id, stack=spec.name, region=spec.region,
            remote_write_url=monitoring.apply(lambda m: m.remote_write_url if m is not None else ""),
            remote_write_role_arn=monitoring.apply(lambda m: m.remote_write_role_arn if m is not None else ""))
    registry = platform.registry if platform is not None else ""
    return EksGpuWorkloads("eks-workloads", EksGpuWorkloadsArgs(pool_role=spec.role.value, fsx_volume=fsx, queues=queues,
                                                         collector=collector, registry=registry),
                    opts=pulumi.ResourceOptions(providers=[provider], depends_on=[cluster]))

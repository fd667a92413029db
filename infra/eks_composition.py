"""Cluster kind ``eks``: how a consumer stack's GPU node groups run on EKS.

The cluster is built before the node templates, because every GPU node must carry the cluster's
security group next to its EFA group (a launch template's interfaces name all their groups; EKS
adds none). Then one EksGpuNodeGroup per template, and the in-cluster workloads through the
Kubernetes provider the stack builds from the cluster's kubeconfig.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi

from gpufleet.infra.eks_cluster import EksGpuCluster, EksGpuClusterArgs
from gpufleet.infra.eks_node_group import EksGpuNodeGroup, EksGpuNodeGroupArgs
from gpufleet.infra.stackfile import StackSpec

if TYPE_CHECKING:
    from gpufleet.infra.network import Network
    from gpufleet.infra.program import ClusterSetup, NodeGroupBinding, PlatformOutputs

KubernetesProviderFactory = Callable[[str, pulumi.Input[str]], pulumi.ProviderResource]
"""Builds a Kubernetes provider from (name, kubeconfig JSON); made in stacks/__main__.py."""


def cluster_name(spec: StackSpec) -> str:
    """One cluster per stack (and per account): ``gpufleet-<stack>``."""
    return f"gpufleet-{spec.name}"


def prepare_eks(spec: StackSpec, network: Network, exports: Mapping[str, Any], opts: pulumi.ResourceOptions,
                kubernetes_provider: KubernetesProviderFactory | None,
                platform: PlatformOutputs | None = None) -> ClusterSetup:
    """Build the control plane; return what the node templates and node groups need."""
    from gpufleet.infra.program import (  # program imports this module
        ClusterSetup,
        node_group_export,
    )

    cluster = EksGpuCluster("eks", EksGpuClusterArgs(
        cluster_name=cluster_name(spec), account_id=spec.account_id, region=spec.region,
        vpc_id=network.vpc_id, subnet_ids=list(network.private_subnet_ids.values()),
        holds_phi=spec.holds_phi, public_access_cidrs=spec.eks_public_access_cidrs,
        operator_role_arn=exports.get("operatorRoleArn"),
        tags={"gpufleet:stack": spec.name}), opts=opts)

    def build_node_groups(bindings: Sequence[NodeGroupBinding], storage: Mapping[str, Any] | None) -> dict[str, Any]:
        groups = []
        for binding in bindings:
            group = binding.spec
            node_group = EksGpuNodeGroup(group.name, EksGpuNodeGroupArgs(
                cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn, pool_role=spec.role.value,
                capacity_pool=group.pool, instance_type=group.instance_type,
                launch_template_id=binding.template.launch_template_id,
                launch_template_version=binding.template.launch_template_version.apply(str),
                subnet_id=binding.subnet_id, min_nodes=group.min_nodes, max_nodes=group.max_nodes,
                num_nodes=group.num_nodes, pool_kind=binding.pool_kind), opts=opts)
            groups.append(node_group_export(group, node_group.asg_name, "eks", node_group.asg_tags))
        if kubernetes_provider is not None:
            _workloads(spec, cluster, storage, kubernetes_provider, [b.spec for b in bindings], platform)
        return {"nodeGroups": groups, "cluster": {
            "kind": "eks", "name": cluster.cluster_name, "endpointAccess": cluster.endpoint_access,
            "nodeRoleArn": cluster.node_role_arn}}

    return ClusterSetup(node_security_group_ids=(cluster.node_security_group_id,), node_image_id=None,
                        build_node_groups=build_node_groups)


def _workloads(spec: StackSpec, cluster: EksGpuCluster, storage: Mapping[str, Any] | None,
               kubernetes_provider: KubernetesProviderFactory, group_specs: Sequence[Any],
               platform: PlatformOutputs | None) -> None:
    from gpufleet.infra.eks_workloads import (
        EksGpuWorkloads,
        EksGpuWorkloadsArgs,
        FsxVolume,
        GpuQueue,
        MetricsCollector,
    )

    provider = kubernetes_provider(f"{cluster_name(spec)}-k8s", cluster.kubeconfig)
    fsx = None
    if storage is not None and spec.storage is not None:
        fsx = FsxVolume(file_system_id=storage["fileSystemId"], dns_name=storage["dnsName"],
                        mount_name=storage["mountName"], capacity_gib=spec.storage.fsx_capacity_gib)
    queues = [GpuQueue(node_group=g.name, instance_type=g.instance_type, max_nodes=g.max_nodes)
              for g in group_specs] if spec.role.value == "training" else []
    collector = None
    if platform is not None and platform.monitoring is not None:
        monitoring = pulumi.Output.from_input(platform.monitoring)
        collector = MetricsCollector(
            account_id=spec.account_id, stack=spec.name, region=spec.region,
            remote_write_url=monitoring.apply(lambda m: (m or {}).get("remoteWriteUrl") or ""),
            remote_write_role_arn=monitoring.apply(lambda m: (m or {}).get("remoteWriteRoleArn") or ""))
    EksGpuWorkloads("eks-workloads", EksGpuWorkloadsArgs(pool_role=spec.role.value, fsx_volume=fsx, queues=queues,
                                                         collector=collector),
                    opts=pulumi.ResourceOptions(providers=[provider], depends_on=[cluster]))

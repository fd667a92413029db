"""Cluster kind ``slurm``: how a training stack's GPU node groups run under Slurm.

The cluster (head node, bundle, munge secret, security group, instance profile) is built before
the node templates, because every GPU node's launch template carries the cluster's security
group, instance profile and user data. Then one SlurmNodeGroup per template, once the file system
exists (its DNS name goes into the nodes' parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi

from gpufleet.infra import catalog
from gpufleet.infra.slurm_cluster import (
    SLURM_IMAGE,
    FsxMount,
    SlurmCluster,
    SlurmClusterArgs,
    SlurmNodeGroup,
    SlurmNodeGroupArgs,
)
from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import NodeGroupSpec, StackSpec

if TYPE_CHECKING:
    from gpufleet.infra.eks_composition import KubernetesProviderFactory
    from gpufleet.infra.network import Network
    from gpufleet.infra.program import ClusterSetup, NodeGroupBinding, PlatformOutputs


def prepare_slurm(spec: StackSpec, network: Network, exports: Mapping[str, Any], opts: pulumi.ResourceOptions,
                  kubernetes_provider: KubernetesProviderFactory | None = None,
                  platform: PlatformOutputs | None = None) -> ClusterSetup:
    """Build the head node and what every node needs; return the node templates' part."""
    from gpufleet.infra.program import (  # program imports this module
        ClusterSetup,
        node_group_export,
    )

    plan = plan_slurm(spec)
    cluster = SlurmCluster("slurm", SlurmClusterArgs(
        plan=plan, account_id=spec.account_id, region=spec.region, vpc_id=network.vpc_id, vpc_cidr=network.cidr,
        s3_prefix_list_id=network.s3_prefix_list_id, head_subnet_id=network.private_subnet_ids[plan.head_az_id]),
        opts=opts)

    def build_node_groups(bindings: Sequence[NodeGroupBinding], storage: Mapping[str, Any] | None) -> dict[str, Any]:
        fsx = (FsxMount(dns_name=storage["dnsName"], mount_name=storage["mountName"], mount_path=storage["mountPath"])
               if storage else None)
        groups = []
        for binding in bindings:
            group = binding.spec
            info = catalog.lookup(group.instance_type)
            node_group = SlurmNodeGroup(group.name, SlurmNodeGroupArgs(
                cluster=cluster, group=group.name, instance_type=group.instance_type, num_gpus=info.gpus,
                efa_interfaces=binding.template.num_efa_interfaces,
                launch_template_id=binding.template.launch_template_id,
                launch_template_version=binding.template.launch_template_version.apply(str),
                subnet_id=binding.subnet_id, min_nodes=group.min_nodes, max_nodes=group.max_nodes,
                num_nodes=group.num_nodes, fsx=fsx), opts=opts)
            groups.append(node_group_export(group, node_group.asg_name, "slurm", node_group.asg_tags))
        return {"nodeGroups": groups, "cluster": {
            "kind": "slurm", "name": plan.cluster.cluster_name, "headInstanceId": cluster.head_instance_id,
            "headAddress": cluster.head_address, "bucketName": cluster.bucket_name,
            "bundleVersion": plan.version, "mungeSecretArn": cluster.munge_secret_arn,
            "partitions": [p.name for p in plan.cluster.partitions]}}

    def user_data(group: NodeGroupSpec) -> str:
        return cluster.group_user_data(group.name)

    return ClusterSetup(node_security_group_ids=(cluster.security_group_id,), node_image_id=SLURM_IMAGE,
                        build_node_groups=build_node_groups, node_user_data=user_data,
                        node_instance_profile_arn=cluster.node_instance_profile_arn)

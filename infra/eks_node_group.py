"""One GPU node group of an EKS cluster: a raw ``aws.eks.NodeGroup`` on an EfaNodeTemplate's launch
template, labelled and tainted by pool. Raw (not pulumi_eks) so tests and guardrails see it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_aws import eks

from gpufleet.infra import eks_scheduling
from gpufleet.infra.model import NodeGroupSpec, Role

__all__ = ["EksGpuNodeGroup", "EksGpuNodeGroupArgs"]

GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
"""EKS accelerated AMI (NVIDIA driver, container toolkit, EFA driver), for a launch template without
an image id (EKS then adds its own bootstrap); the gpufleet node image is baked on it."""
DESIRED_SIZE = "scalingConfig.desiredSize"
"""Pulumi sets the initial size only; the rebalancer owns desired size afterwards."""


@dataclass(frozen=True, kw_only=True)
class EksGpuNodeGroupArgs:
    cluster_name: pulumi.Input[str]
    """The EksGpuCluster's name."""
    node_role_arn: pulumi.Input[str]
    """The EksGpuCluster's node role."""
    pool_role: Role
    """``training`` or ``inference``: the ``gpufleet.io/pool`` label."""
    node_group: NodeGroupSpec
    """The node group as the stack file declares it (validated there): pool (label
    ``gpufleet.io/capacity-pool``), instance type (the launch template's), bounds, initial size."""
    launch_template_id: pulumi.Input[str]
    """The EfaNodeTemplate's launch template: every EFA interface, the pool's reservation."""
    launch_template_version: pulumi.Input[str]
    """Version to launch."""
    subnet_id: pulumi.Input[str]
    """The private subnet in the pool's AZ ID (a reservation serves one AZ)."""
    pool_kind: pulumi.Input[str] = "odcr"
    """odcr, capacity-block or on-demand: capacity blocks need the CAPACITY_BLOCK capacity type."""
    ami_type: str | None = GPU_AMI_TYPE
    """EKS AMI type; None when the launch template names the image (the gpufleet node image: a
    custom AMI, so EKS merges nothing into the user data and its NodeConfig must be complete)."""


class EksGpuNodeGroup(pulumi.ComponentResource):
    """Outputs: ``asg_name`` (the Auto Scaling group EKS made for the group), ``node_group_name``,
    ``asg_tags`` (the tags EKS puts on that Auto Scaling group)."""

    def __init__(self, name: str, args: EksGpuNodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:eks:EksGpuNodeGroup", name, None, opts)
        group = args.node_group
        self.node_group = eks.NodeGroup(
            f"{name}-nodes",
            # The physical name is the stack file's: EKS tags the group's Auto Scaling group with
            # eks:nodegroup-name = this name, and the operator policy's conditions name it.
            node_group_name=name,
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=[args.subnet_id],
            ami_type=args.ami_type,
            capacity_type=pulumi.Output.from_input(args.pool_kind).apply(capacity_type),
            launch_template=eks.NodeGroupLaunchTemplateArgs(
                id=args.launch_template_id, version=args.launch_template_version),
            scaling_config=eks.NodeGroupScalingConfigArgs(
                min_size=group.min_nodes, max_size=group.max_nodes, desired_size=group.initial_nodes),
            labels=eks_scheduling.gpu_node_labels(args.pool_role.value, group.pool, name),
            # The same taints the NodeConfig registers the kubelet with (the hold first): EKS records
            # and reconciles these, the kubelet's flags make them hold from the first registration.
            taints=[eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=t.effect)
                    for t in eks_scheduling.GPU_NODE_TAINTS],
            # A GPU node drains slowly (checkpoint first): replace one at a time.
            update_config=eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            # These tag the node group itself; EKS does not copy them to the Auto Scaling group.
            tags={"gpufleet:node-group": name, "gpufleet:orchestrator": "eks",
                  "gpufleet:capacity-pool": group.pool},
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=[DESIRED_SIZE]),
        )
        self.node_group_name = self.node_group.node_group_name
        self.asg_name: pulumi.Output[str] = self.node_group.resources.apply(asg_name_of)
        self.asg_tags: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            args.cluster_name, self.node_group_name).apply(lambda names: eks_asg_tags(*names))
        self.register_outputs({"asgName": self.asg_name})


def eks_asg_tags(cluster_name: str, node_group_name: str) -> dict[str, str]:
    """The tags EKS puts on the Auto Scaling group of a managed node group: the group's identity,
    the cluster's ownership and the cluster autoscaler's auto-discovery tags; node-group tags do
    not propagate to it. The sandbox tags the group it stands in for EKS with exactly these."""
    # https://docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html ("Managed node
    # groups concepts": EKS tags the Auto Scaling group with eks:cluster-name and
    # eks:nodegroup-name, plus the k8s.io/cluster-autoscaler/* auto-discovery tags).
    return {"eks:cluster-name": cluster_name, "eks:nodegroup-name": node_group_name,
            "k8s.io/cluster-autoscaler/enabled": "true", f"k8s.io/cluster-autoscaler/{cluster_name}": "owned",
            f"kubernetes.io/cluster/{cluster_name}": "owned"}


def capacity_type(pool_kind: str) -> str:
    """EKS capacity type of a pool kind; reservations (ODCR) are consumed as ON_DEMAND."""
    return "CAPACITY_BLOCK" if pool_kind == "capacity-block" else "ON_DEMAND"


def asg_name_of(resources: Sequence[Any] | None) -> str:
    """``resources[0].autoscalingGroups[0].name`` of a node group, as typed outputs or plain dicts."""
    for resource in resources or ():
        groups = _get(resource, "autoscaling_groups", "autoscalingGroups") or ()
        for group in groups:
            name = _get(group, "name", "name")
            if name:
                return name
    raise ValueError(f"node group resources carry no Auto Scaling group: {resources!r}")


def _get(obj: Any, attr: str, key: str) -> Any:
    # Typed outputs are dict subclasses that warn on key access: read the property first.
    value = getattr(obj, attr, None)
    if value is None and isinstance(obj, dict):
        value = obj.get(key)
    return value

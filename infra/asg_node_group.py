"""GPU nodes as a plain Auto Scaling group on a node template (cluster kind ``none``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import autoscaling

__all__ = ["AsgNodeGroup", "AsgNodeGroupArgs", "gpu_node_asg"]
from gpufleet.infra.model import NodeGroupSpec

DESIRED_CAPACITY = "desiredCapacity"
"""Pulumi sets the initial size only; the rebalancer owns desired capacity afterwards."""


@dataclass(frozen=True, kw_only=True)
class AsgNodeGroupArgs:
    node_group: NodeGroupSpec
    """The node group as the stack file declares it (validated there): bounds and initial size."""
    launch_template_id: pulumi.Input[str]
    """Launch template of the group's EfaNodeTemplate."""
    launch_template_version: pulumi.Input[str]
    """Version to launch; the template's latest version."""
    subnet_id: pulumi.Input[str]
    """The private subnet in the pool's AZ ID (a reservation serves one AZ)."""
    orchestrator: str = "none"
    """Tag value naming the orchestrator that uses the nodes."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """More tags for the group and its instances (the stack's ``gpufleet:stack``/``gpufleet:role``:
    the provider's default tags never reach an Auto Scaling group)."""


def gpu_node_asg(resource_name: str, args: AsgNodeGroupArgs, *, tags: Mapping[str, str],
                 opts: pulumi.ResourceOptions) -> autoscaling.Group:
    """The Auto Scaling group behind every ASG-backed GPU node group (plain and Slurm), tagged with
    exactly ``tags`` (propagated to the instances).

    ``opts`` gets ``ignore_changes`` on desired capacity added: the rebalancer owns it.
    """
    group = args.node_group
    return autoscaling.Group(
        resource_name,
        min_size=group.min_nodes,
        max_size=group.max_nodes,
        desired_capacity=group.initial_nodes,
        vpc_zone_identifiers=[args.subnet_id],
        launch_template=autoscaling.GroupLaunchTemplateArgs(
            id=args.launch_template_id, version=args.launch_template_version),
        health_check_type="EC2",
        # GPU nodes take minutes to pass the health gate; a short grace period churns them.
        health_check_grace_period=900,
        wait_for_capacity_timeout="0",
        # The missing-nodes alarm (MetricsForwarding) compares these two group metrics.
        enabled_metrics=["GroupDesiredCapacity", "GroupInServiceInstances"],
        tags=[autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
              for key, value in tags.items()],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=[DESIRED_CAPACITY])),
    )


class AsgNodeGroup(pulumi.ComponentResource):
    """Outputs: ``asg_name``, and ``asg_tags`` (the tags on the group, as AWS will show them)."""

    def __init__(self, name: str, args: AsgNodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:compute:AsgNodeGroup", name, None, opts)
        self.asg_tags: dict[str, str] = {**args.tags, "gpufleet:node-group": name,
                                         "gpufleet:orchestrator": args.orchestrator}
        self.group = gpu_node_asg(f"{name}-asg", args, tags=self.asg_tags, opts=pulumi.ResourceOptions(parent=self))
        self.asg_name = self.group.name
        self.register_outputs({"asgName": self.asg_name})

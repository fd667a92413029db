"""GPU nodes as a plain Auto Scaling group on a node template (cluster kind ``none``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import autoscaling

DESIRED_CAPACITY = "desiredCapacity"
"""Pulumi sets the initial size only; the rebalancer owns desired capacity afterwards."""


@dataclass(frozen=True, kw_only=True)
class AsgNodeGroupArgs:
    launch_template_id: pulumi.Input[str]
    """Launch template of the group's EfaNodeTemplate."""
    launch_template_version: pulumi.Input[str]
    """Version to launch; the template's latest version."""
    subnet_id: pulumi.Input[str]
    """The private subnet in the pool's AZ ID (a reservation serves one AZ)."""
    min_nodes: int
    """Lower bound of the group."""
    max_nodes: int
    """Upper bound of the group."""
    num_nodes: int
    """Initial desired size."""
    orchestrator: str = "none"
    """Tag value naming the orchestrator that uses the nodes."""

    def __post_init__(self) -> None:
        if self.min_nodes < 0:
            raise ValueError(f"min_nodes: {self.min_nodes!r} must be at least 0")
        if not self.min_nodes <= self.num_nodes <= self.max_nodes:
            raise ValueError(f"num_nodes: {self.num_nodes!r} must lie within min_nodes {self.min_nodes} "
                             f"and max_nodes {self.max_nodes}")


def asg_tags_of(group: autoscaling.Group) -> pulumi.Output[dict[str, str]]:
    """The tags on the group itself (the provider's default tags never reach an Auto Scaling group)."""
    def plain(tags: object) -> dict[str, str]:
        out = {}
        for tag in tags or ():  # type: ignore[attr-defined]
            key = getattr(tag, "key", None) or tag["key"]
            out[str(key)] = str(getattr(tag, "value", None) or tag["value"])
        return out
    return group.tags.apply(plain)


def gpu_node_asg(resource_name: str, args: AsgNodeGroupArgs, *, tags: dict[str, pulumi.Input[str]],
                 opts: pulumi.ResourceOptions) -> autoscaling.Group:
    """The Auto Scaling group behind every ASG-backed GPU node group (plain and Slurm).

    ``opts`` gets ``ignore_changes`` on desired capacity added: the rebalancer owns it.
    """
    return autoscaling.Group(
        resource_name,
        min_size=args.min_nodes,
        max_size=args.max_nodes,
        desired_capacity=args.num_nodes,
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
    """Outputs: ``asg_name``, ``asg_tags``."""

    def __init__(self, name: str, args: AsgNodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:compute:AsgNodeGroup", name, None, opts)
        self.group = gpu_node_asg(
            f"{name}-asg", args, tags={"gpufleet:node-group": name, "gpufleet:orchestrator": args.orchestrator},
            opts=pulumi.ResourceOptions(parent=self))
        self.asg_name = self.group.name
        self.asg_tags = asg_tags_of(self.group)
        self.register_outputs({"asgName": self.asg_name})

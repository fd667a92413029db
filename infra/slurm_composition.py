"""Cluster kind ``slurm``: how a training stack's GPU node groups run under Slurm.

The cluster (head node, bundle, munge secret, security group, instance profile) is built before
the node templates, because every GPU node's launch template carries the cluster's security
group, instance profile and user data. Then one SlurmNodeGroup per template, once the file system
exists (its DNS name goes into the nodes' parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi

from gpufleet.infra import baseline_policies as policies
from gpufleet.infra import catalog, key_policies
from gpufleet.infra.account_baseline import OPERATOR_ROLE_NAME
from gpufleet.infra.contract import ClusterOutput, StorageOutput
from gpufleet.infra.healer_archive import healer_files
from gpufleet.infra.model import NodeGroupSpec, Role, StackSpec
from gpufleet.infra.node_image import consumer_node_image
from gpufleet.infra.node_image_plan import ImageKind
from gpufleet.infra.slurm_cluster import (
    FsxMount,
    SlurmCluster,
    SlurmClusterArgs,
    SlurmNodeGroup,
    SlurmNodeGroupArgs,
)
from gpufleet.infra.slurm_collector import SlurmCollectorArgs
from gpufleet.infra.slurm_plan import plan_slurm

if TYPE_CHECKING:
    from gpufleet.infra.eks_composition import KubernetesProviderFactory
    from gpufleet.infra.network import Network
    from gpufleet.infra.program import ClusterSetup, NodeGroupBinding, PlatformOutputs


def prepare_slurm(spec: StackSpec, network: Network, operator_role_arn: pulumi.Input[str | None],
                  opts: pulumi.ResourceOptions, kubernetes_provider: KubernetesProviderFactory | None = None,
                  platform: PlatformOutputs | None = None) -> ClusterSetup:
    """Build the head node and what every node needs; return the node templates' part."""
    from gpufleet.infra.program import (  # program imports this module
        BuiltNodeGroups,
        ClusterSetup,
        node_group_output,
        platform_monitoring,
        stack_tags,
    )

    plan = plan_slurm(spec)
    collector = None
    if platform is not None:
        monitoring = pulumi.Output.from_input(platform.monitoring)
        collector = SlurmCollectorArgs(
            stack=spec.name, pools_by_group={g.name: g.pool for g in spec.node_groups},
            remote_write_url=monitoring.apply(lambda m: platform_monitoring(spec, m).remote_write_url),
            remote_write_role_arn=monitoring.apply(lambda m: platform_monitoring(spec, m).remote_write_role_arn))
    # The baked image (pinned Slurm, munge, exporters, node venv): the DLAMI has no Slurm or munge.
    image_id = consumer_node_image(spec, ImageKind.SLURM, platform.node_images if platform is not None else (), opts)
    cluster = SlurmCluster("slurm", SlurmClusterArgs(
        plan=plan, image_id=image_id, account_id=spec.account_id, region=spec.region, vpc_id=network.vpc_id,
        vpc_cidr=network.cidr,
        s3_prefix_list_id=network.s3_prefix_list_id,
        dynamodb_prefix_list_id=network.gateway_prefix_list_ids.get("dynamodb"), head_subnet_id=network.private_subnet_ids[plan.head_az_id],
        collector=collector, healer_role_arns=healer_roles(spec, platform), healer_files=head_healer_files(spec)),
        opts=opts)
    name = plan.cluster.cluster_name

    def build_node_groups(bindings: Sequence[NodeGroupBinding], storage: StorageOutput | None) -> BuiltNodeGroups:
        fsx = (FsxMount(dns_name=storage.dns_name, mount_name=storage.mount_name, mount_path=storage.mount_path)
               if storage is not None else None)
        groups = []
        for binding in bindings:
            group = binding.spec
            node_group = SlurmNodeGroup(group.name, SlurmNodeGroupArgs(
                cluster=cluster, node_group=group, num_gpus=catalog.lookup(group.instance_type).gpus,
                efa_interfaces=binding.template.num_efa_interfaces,
                launch_template_id=binding.template.launch_template_id,
                launch_template_version=binding.template.launch_template_version.apply(str),
                subnet_id=binding.subnet_id, fsx=fsx, tags=stack_tags(spec)), opts=opts)
            groups.append(node_group_output(group, node_group.asg_name, node_group.asg_tags, "slurm", cluster=name))
        return BuiltNodeGroups(node_groups=tuple(groups), cluster=ClusterOutput(
            kind="slurm", name=name, endpoint=plan.head_address, head_instance_id=cluster.head_instance_id,  # type: ignore[arg-type]
            head_address=plan.head_address, bucket_name=cluster.bucket_name,  # type: ignore[arg-type]
            bundle_version=plan.version, munge_secret_arn=cluster.munge_secret_arn,  # type: ignore[arg-type]
            partitions=tuple(p.name for p in plan.cluster.partitions)))

    def user_data(group: NodeGroupSpec) -> str:
        return cluster.group_user_data(group.name)

    return ClusterSetup(node_security_group_ids=(cluster.security_group_id,), node_image_id=image_id,
                        build_node_groups=build_node_groups, node_user_data=user_data,
                        node_instance_profile_arn=cluster.node_instance_profile_arn,
                        collector_principal_arns=(cluster.head_role_arn,) if collector is not None else ())


def healer_roles(spec: StackSpec, platform: PlatformOutputs | None) -> tuple[pulumi.Input[str], ...]:
    """What the head's healer assumes: this account's operator role; in a training account also the
    platform's healer journal role (an inference head gets no way to the journal: its trust is the
    training heads' only, and this policy does not name it either)."""
    partition = key_policies.partition_of(spec.region)
    own = policies.role_arn(partition, spec.account_id, OPERATOR_ROLE_NAME)
    if spec.role is not Role.TRAINING or platform is None or platform.automation_role_arn is None:
        return (own,)
    journal = pulumi.Output.from_input(platform.automation_role_arn).apply(
        lambda arn: policies.role_arn(partition, arn.split(":")[4], policies.HEALER_JOURNAL_ROLE_NAME))
    return (own, journal)


def head_healer_files(spec: StackSpec, root: Path | None = None) -> dict[str, str] | None:
    """The healer archive for a training stack's head, with the collected inventory (read as the
    scheduler function's is: `gpufleet inventory collect`, then `pulumi up`, refreshes it; without
    one every pass exits 2 naming the file). None for an inference stack: its head may not assume
    the journal role (docs/security.md), so a healer there could only fail."""
    if spec.role is not Role.TRAINING:
        return None
    return healer_files(collected_inventory("the head's healer", root))


def collected_inventory(reader: str, root: Path | None = None) -> str | None:
    """The inventory `gpufleet inventory collect` wrote under the project root, for ``reader``;
    None (with a warning) before the first collect."""
    from gpufleet.infra.program import (  # program imports this module
        SCHEDULER_INVENTORY,
        project_root,
    )

    root = root or project_root()
    inventory = root / SCHEDULER_INVENTORY if root is not None else None
    if inventory is None or not inventory.is_file():
        pulumi.log.warn(f"{inventory or SCHEDULER_INVENTORY}: no inventory; {reader} fails every pass until "
                        "`gpufleet inventory collect` and `pulumi up` on this stack package one")
        return None
    return inventory.read_text(encoding="utf-8")

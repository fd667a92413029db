"""What a Slurm training stack's cluster looks like, worked out from the stack file alone.

Pure: no pulumi import. The head node's address and the lifecycle bucket's name are fixed here
(not read back from AWS) so that slurm.conf and every node's user data are known before any
resource exists: the rendered files can be golden-tested and uploaded in the same update.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gpufleet.infra import catalog, cidr
from gpufleet.infra.model import ClusterKind, StackSpec
from gpufleet.lifecycle.bootstrap.bundle import bundle_files, bundle_version
from gpufleet.lifecycle.slurm.conf import PartitionSpec, SlurmClusterSpec, SlurmSite

HEAD_HOST_INDEX = 10
"""Host number of the head node in its subnet (AWS reserves the first four addresses)."""
HEAD_HOSTNAME = "slurm-head"
BUNDLE_PREFIX = "lifecycle"


@dataclass(frozen=True, kw_only=True)
class SlurmPlan:
    """The cluster and the files its nodes download."""

    cluster: SlurmClusterSpec
    """Partitions (one per node group) and the site on AWS."""
    head_az_id: str
    """AZ ID of the head node's private subnet."""
    head_address: str
    """Fixed private IP of the head node (slurmctld, slurmrestd)."""
    bucket_name: str
    """Lifecycle bucket (fixed name: user data refers to it before it exists)."""
    files: dict[str, str]
    """Bundle path -> content: the node package (scripts, modules, data) and the rendered Slurm
    configuration (``gpufleet.lifecycle.bootstrap.bundle.bundle_files``)."""
    version: str
    """Digest of ``files``; the bundle's S3 prefix is ``lifecycle/<version>/``."""

    @property
    def bundle_uri(self) -> str:
        return f"s3://{self.bucket_name}/{BUNDLE_PREFIX}/{self.version}/"

    def object_key(self, path: str) -> str:
        return f"{BUNDLE_PREFIX}/{self.version}/{path}"


def spec_from_stack(stack: StackSpec, site: SlurmSite) -> SlurmClusterSpec:
    """The Slurm cluster a training stack asks for: one partition per node group, GRES from the catalog."""
    if stack.cluster_kind is not ClusterKind.SLURM:
        raise ValueError(f"{stack.source}: gpufleet:clusterKind is {stack.cluster_kind.value!r}, not 'slurm'")
    partitions = []
    for i, group in enumerate(stack.node_groups):
        info = catalog.lookup(group.instance_type)
        partitions.append(PartitionSpec(
            name=group.name, feature=group.name, max_nodes=group.max_nodes,
            gpus_per_node=info.gpus, gpu_type=info.gpu_model.lower(), is_default=i == 0,
        ))
    return SlurmClusterSpec(cluster_name=stack.name, partitions=tuple(partitions), site=site)


def head_address(stack: StackSpec) -> tuple[str, str]:
    """(AZ ID, address): the head node sits in the private subnet of the stack's first AZ ID."""
    plans = cidr.plan_subnets(stack.network.cidr, stack.az_ids, enable_nat=stack.network.enable_nat)
    first = next(p for p in plans if p.tier is cidr.SubnetTier.PRIVATE and p.az_id == stack.az_ids[0])
    return first.az_id, str(ipaddress.IPv4Network(first.cidr)[HEAD_HOST_INDEX])


def lifecycle_bucket_name(stack: StackSpec) -> str:
    """Globally unique through account and region; at most 63 characters."""
    name = f"gpufleet-{stack.name}-{stack.account_id}-{stack.region}"[:52].rstrip("-")
    return f"{name}-lifecycle"


def plan_slurm(stack: StackSpec) -> SlurmPlan:
    az_id, address = head_address(stack)
    cluster = spec_from_stack(stack, SlurmSite(controller_hostname=HEAD_HOSTNAME, controller_addr=address))
    files = bundle_files(cluster, source=f"stacks/Pulumi.{stack.name}.yaml")
    return SlurmPlan(cluster=cluster, head_az_id=az_id, head_address=address,
                     bucket_name=lifecycle_bucket_name(stack), files=files, version=bundle_version(files))


def efa_interfaces(instance_type: str) -> int:
    return catalog.lookup(instance_type).efa_interfaces

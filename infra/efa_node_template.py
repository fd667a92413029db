"""How a GPU node of one node group is launched: EFA security group, optional placement group,
and a launch template with every EFA interface, bound to its pool's capacity reservation."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import ec2

from gpufleet.infra import catalog
from gpufleet.infra.image_family import IMAGE_FAMILY_TAG, ImageFamily

__all__ = ["EfaNodeTemplate", "EfaNodeTemplateArgs"]

DEEP_LEARNING_AMI = (
    "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
    "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
"""EC2 resolves ``resolve:ssm:`` image ids at launch: the current DLAMI with NVIDIA driver and EFA."""
LUSTRE_PORTS = ((988, 988), (1018, 1023))
"""FSx for Lustre: LNet on 988, and 1018-1023 for the Lustre client."""
CAPACITY_BLOCK = "capacity-block"


@dataclass(frozen=True, kw_only=True)
class EfaNodeTemplateArgs:
    instance_type: str
    """EC2 instance type; its EFA interface layout comes from the catalog."""
    vpc_id: pulumi.Input[str]
    """VPC the security group belongs to."""
    vpc_cidr: str
    """VPC block: the only destination of HTTPS egress besides the S3 prefix list."""
    s3_prefix_list_id: pulumi.Input[str]
    """Prefix list of the S3 gateway endpoint (image layers, datasets)."""
    ebs_kms_key_arn: pulumi.Input[str]
    """CMK that encrypts the root volume; Auto Scaling's service-linked role must be allowed to use it."""
    capacity_reservation_id: pulumi.Input[str | None] = None
    """Reservation or capacity block the nodes launch into (targeted); None: on-demand, open."""
    pool_kind: pulumi.Input[str] = "odcr"
    """Kind of the pool (odcr, capacity-block, on-demand); capacity blocks need their own market type."""
    enable_placement_group: bool = False
    """Create a cluster placement group (the plan flags it with a targeted reservation)."""
    enable_lustre_client: bool = False
    """Allow egress to FSx for Lustre ports inside the VPC."""
    enable_internet_egress: bool = False
    """Allow HTTPS to anywhere: only in a VPC with a NAT path (training: package indexes, model
    hubs), so the NAT is reachable by the nodes it was built for."""
    user_data: pulumi.Input[str] | None = None
    """Base64 user data; the cluster component (Slurm, EKS) plugs in its bootstrap."""
    image_id: pulumi.Input[str] | None = DEEP_LEARNING_AMI
    """AMI id or a ``resolve:ssm:`` parameter; None: the node group picks it (EKS AMI types)."""
    image_family: ImageFamily = ImageFamily.UBUNTU_DLAMI
    """Family of the image the nodes boot: the root volume is mapped under its root device name."""
    root_volume_gib: int = 200
    """Size of the encrypted gp3 root volume."""
    extra_security_group_ids: tuple[pulumi.Input[str], ...] = ()
    """Groups every interface carries besides the EFA group (EKS: the cluster security group)."""
    iam_instance_profile_arn: pulumi.Input[str] | None = None
    """Instance profile of the nodes; None: the node group supplies one (EKS) or the nodes get none."""
    imds_hop_limit: int = 1
    """IMDSv2 response hop limit: 1 keeps instance credentials on the host (pods in their own
    network namespace cannot reach IMDS; they get credentials from Pod Identity); 2 only where a
    containerised workload must read IMDS itself."""

    def __post_init__(self) -> None:
        try:
            catalog.lookup(self.instance_type)
        except catalog.UnknownInstanceTypeError as err:
            raise ValueError(f"instance_type: {err}") from None
        if self.imds_hop_limit not in (1, 2):
            raise ValueError(f"imds_hop_limit: {self.imds_hop_limit!r} must be 1 or 2")
        if not 8 <= self.root_volume_gib <= 16384:
            raise ValueError(f"root_volume_gib: {self.root_volume_gib!r} must be 8-16384")


class EfaNodeTemplate(pulumi.ComponentResource):
    """Outputs: ``security_group_id``, ``launch_template_id``, ``launch_template_version``,
    ``placement_group_name`` (None without a placement group), ``num_efa_interfaces``."""

    def __init__(self, name: str, args: EfaNodeTemplateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:compute:EfaNodeTemplate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        layout = catalog.efa_interface_layout(args.instance_type)

        egress = [
            # EFA's OS-bypass traffic is dropped unless the group allows all traffic to itself.
            ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                        description="EFA: all traffic within the group"),
            ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                        cidr_blocks=[args.vpc_cidr], description="HTTPS to VPC endpoints"),
            ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                        prefix_list_ids=[args.s3_prefix_list_id],
                                        description="HTTPS to the S3 gateway endpoint"),
        ]
        if args.enable_internet_egress:
            egress.append(ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=["0.0.0.0/0"],
                                                      description="HTTPS to the internet through the NAT"))
        if args.enable_lustre_client:
            egress += [ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=low, to_port=high,
                                                   cidr_blocks=[args.vpc_cidr], description="FSx for Lustre")
                       for low, high in LUSTRE_PORTS]
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description=f"{name}: EFA nodes",
            ingress=[ec2.SecurityGroupIngressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                                  description="EFA: all traffic within the group")],
            egress=egress, opts=child)

        self.placement_group = None
        if args.enable_placement_group:
            self.placement_group = ec2.PlacementGroup(f"{name}-pg", strategy="cluster", opts=child)

        self.launch_template = ec2.LaunchTemplate(
            f"{name}-lt",
            instance_type=args.instance_type,
            image_id=args.image_id,
            user_data=args.user_data,
            iam_instance_profile=(ec2.LaunchTemplateIamInstanceProfileArgs(arn=args.iam_instance_profile_arn)
                                  if args.iam_instance_profile_arn is not None else None),
            update_default_version=True,
            ebs_optimized="true",
            network_interfaces=[
                ec2.LaunchTemplateNetworkInterfaceArgs(
                    network_card_index=slot.network_card_index, device_index=slot.device_index,
                    interface_type=slot.interface_type, security_groups=[self.security_group.id, *args.extra_security_group_ids],
                    associate_public_ip_address="false", delete_on_termination="true")
                for slot in layout
            ],
            metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required",
                http_put_response_hop_limit=args.imds_hop_limit,
                # Nothing on the node reads its tags from IMDS (the bootstrap gets its settings
                # from user data), so instance tags stay out of the metadata service.
                instance_metadata_tags="disabled"),
            block_device_mappings=[ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=args.image_family.root_device,
                ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3", volume_size=args.root_volume_gib, encrypted="true",
                    kms_key_id=args.ebs_kms_key_arn, delete_on_termination="true"))],
            capacity_reservation_specification=pulumi.Output.from_input(
                args.capacity_reservation_id).apply(_reservation_spec),
            instance_market_options=pulumi.Output.from_input(args.pool_kind).apply(_market_options),
            placement=(ec2.LaunchTemplatePlacementArgs(group_name=self.placement_group.name)
                       if self.placement_group is not None else None),
            tag_specifications=[ec2.LaunchTemplateTagSpecificationArgs(
                resource_type="instance", tags={"gpufleet:node-template": name})],
            # The image the nodes boot is a custom AMI (an ami- id from the platform's outputs):
            # the template says which family it is, so the root-device guardrail can check the mapping.
            tags={IMAGE_FAMILY_TAG: args.image_family.value},
            opts=child,
        )

        self.security_group_id = self.security_group.id
        self.launch_template_id = self.launch_template.id
        self.launch_template_version = self.launch_template.latest_version
        self.placement_group_name = self.placement_group.name if self.placement_group else None
        self.num_efa_interfaces = sum(1 for s in layout if s.interface_type != "interface")
        self.register_outputs({"securityGroupId": self.security_group_id,
                               "launchTemplateId": self.launch_template_id})


def _reservation_spec(reservation_id: str | None) -> ec2.LaunchTemplateCapacityReservationSpecificationArgs:
    if not reservation_id:
        return ec2.LaunchTemplateCapacityReservationSpecificationArgs(capacity_reservation_preference="open")
    return ec2.LaunchTemplateCapacityReservationSpecificationArgs(
        capacity_reservation_target=ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
            capacity_reservation_id=reservation_id))


def _market_options(pool_kind: str) -> ec2.LaunchTemplateInstanceMarketOptionsArgs | None:
    if pool_kind == CAPACITY_BLOCK:
        return ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type=CAPACITY_BLOCK)
    return None

"""A Slurm GPU cluster on AWS: head node, lifecycle bundle in S3, munge key, node access.

``SlurmCluster`` is built before the GPU node templates: it owns what every Slurm node needs (the
cluster security group, the instance profile, the user data that fetches the lifecycle bundle)
and the head node (slurmctld + slurmrestd). ``SlurmNodeGroup`` is built per GPU node group once
the node templates and the file system exist: the group's parameters file in the bundle and its
Auto Scaling group. ``SlurmLoginNode`` is the optional login host.

Nodes register as Slurm dynamic nodes (``slurmd -Z``) at boot and remove themselves on shutdown,
so scaling a group's Auto Scaling group adds and removes Slurm nodes. The munge key is made by
the head node at first boot and kept in Secrets Manager under the cluster's CMK: it never passes
through Pulumi state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pulumi
from pulumi_aws import ec2, iam, s3, secretsmanager, ssm

from gpufleet.infra import baseline_policies as policies
from gpufleet.infra.asg_node_group import AsgNodeGroupArgs, gpu_node_asg
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs
from gpufleet.infra.healer_archive import ARCHIVE_DIR as HEALER_DIR
from gpufleet.infra.model import NodeGroupSpec
from gpufleet.infra.secure_bucket import BucketOrigin, SecureBucket, SecureBucketArgs
from gpufleet.infra.slurm_collector import SlurmCollectorArgs, install_collector
from gpufleet.infra.slurm_plan import SlurmPlan
from gpufleet.lifecycle.bootstrap.user_data import (
    NodeParams,
    NodeRole,
    UserDataParams,
    render_node_env,
    render_user_data,
)

__all__ = [
    "FsxMount",
    "SlurmCluster",
    "SlurmClusterArgs",
    "SlurmHost",
    "SlurmHostArgs",
    "SlurmNodeGroup",
    "SlurmNodeGroupArgs",
]

SLURM_IMAGE_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
"""Public SSM parameter naming the newest DLAMI with NVIDIA driver and EFA on Ubuntu 24.04, whose
Slurm (23.11) has dynamic nodes."""
SLURM_IMAGE = f"resolve:ssm:{SLURM_IMAGE_PARAMETER}"
"""The image as launch templates take it (EC2 resolves it at each launch)."""
RESOLVE_SSM = "resolve:ssm:"
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


@dataclass(frozen=True, kw_only=True)
class FsxMount:
    """The training file system as nodes mount it."""

    dns_name: pulumi.Input[str]
    """File system DNS name."""
    mount_name: pulumi.Input[str]
    """Lustre mount name."""
    mount_path: str
    """Where nodes mount it."""


@dataclass(frozen=True, kw_only=True)
class SlurmClusterArgs:
    plan: SlurmPlan
    """Partitions, head address, bucket name and bundle files (infra/slurm_plan.py)."""
    account_id: str
    """Account of the cluster."""
    region: str
    """Region of the cluster."""
    vpc_id: pulumi.Input[str]
    """VPC of the cluster."""
    vpc_cidr: str
    """VPC block: HTTPS to the interface endpoints."""
    s3_prefix_list_id: pulumi.Input[str]
    """S3 gateway endpoint prefix list (the bundle bucket)."""
    dynamodb_prefix_list_id: pulumi.Input[str] | None = None
    """DynamoDB gateway endpoint prefix list (the head's healer writes the journal); None: none rendered."""
    head_subnet_id: pulumi.Input[str]
    """Private subnet holding the head node's fixed address (``plan.head_az_id``)."""
    image_id: pulumi.Input[str] = SLURM_IMAGE
    """AMI of the head node (the GPU nodes use the same through their templates)."""
    head_instance_type: str = "m7i.2xlarge"
    """slurmctld and slurmrestd: CPU and memory grow with jobs and nodes, not with GPUs."""
    head_volume_gib: int = 100
    """Encrypted root volume of the head node (slurmctld state and logs)."""
    collector: SlurmCollectorArgs | None = None
    """Scrape every node's exporters from the head and remote-write them (infra/slurm_collector.py);
    None: exporters only."""
    healer_files: Mapping[str, str] | None = None
    """The healer archive (infra/healer_archive.py: path -> text), uploaded under ``healer/`` in the
    bundle for the head's gpufleet-healer.service (75-healer.sh); None: no healer on the head."""
    healer_role_arns: Sequence[pulumi.Input[str]] = ()
    """Roles the head's instance role (``gpufleet-slurm-head``) may assume for its healer: this
    account's operator role and, in a training account, the platform's healer journal role."""

    def __post_init__(self) -> None:
        if not self.plan.cluster.partitions:
            raise ValueError("plan: a Slurm cluster needs at least one node group (partition)")
        if not 20 <= self.head_volume_gib <= 16384:
            raise ValueError(f"head_volume_gib: {self.head_volume_gib!r} must be 20-16384")


class SlurmCluster(pulumi.ComponentResource):
    """Outputs: ``security_group_id``, ``node_instance_profile_arn``, ``munge_secret_arn``,
    ``bucket_name``, ``head_instance_id``, ``head_address``; ``user_data(group)`` for templates."""

    def __init__(self, name: str, args: SlurmClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:slurm:SlurmCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plan = args.plan
        self.name = name
        self.plan = plan
        self.region = args.region
        self.image_id = args.image_id
        self.key = EncryptionKey(f"{name}-key", EncryptionKeyArgs(
            description=f"{name}: munge key secret and lifecycle bundle", account_id=args.account_id,
            region=args.region), opts=child)

        # force_destroy: the bundle is the program's own output, deleted with the cluster.
        self.bucket = SecureBucket(f"{name}-lifecycle", SecureBucketArgs(
            kms_key_arn=self.key.arn, bucket_name=plan.bucket_name, force_destroy=True,
            moved_from=BucketOrigin(parent=self, policy_name=f"{name}-lifecycle-tls-only")), opts=child)
        self.bundle_objects = [
            s3.BucketObjectv2(f"{name}-bundle-{path.replace('/', '-')}", bucket=self.bucket.id,
                              key=plan.object_key(path), content=text,
                              content_type="text/plain", opts=child)
            for path, text in sorted(plan.files.items())
        ]

        self.munge_secret = secretsmanager.Secret(
            f"{name}-munge-key", description=f"{name}: munge key (base64), written by the head node",
            kms_key_id=self.key.arn, recovery_window_in_days=7, opts=child)

        self.security_group = ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description=f"{name}: Slurm head, login and GPU nodes",
            ingress=[ec2.SecurityGroupIngressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                                  description="Slurm, srun and munge between cluster nodes")],
            egress=[
                ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                            description="Slurm, srun and munge between cluster nodes"),
                ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443, cidr_blocks=[args.vpc_cidr],
                                            description="HTTPS to VPC endpoints (Secrets Manager, SSM)"),
                ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                            prefix_list_ids=[args.s3_prefix_list_id],
                                            description="HTTPS to the S3 gateway endpoint (lifecycle bundle)"),
                *([ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                               prefix_list_ids=[args.dynamodb_prefix_list_id],
                                               description="HTTPS to the DynamoDB gateway endpoint (the healer's journal)")]
                  if args.dynamodb_prefix_list_id is not None else []),
            ],
            opts=child)

        node_role = _node_role(f"{name}-node", self.bucket.arn, self.munge_secret.arn, self.key.arn,
                               can_write_secret=False, opts=child)
        head_role = _node_role(f"{name}-head", self.bucket.arn, self.munge_secret.arn, self.key.arn,
                               can_write_secret=True, role_name=policies.HEAD_ROLE_NAME, opts=child)
        if args.healer_role_arns:
            iam.RolePolicy(f"{name}-head-healer", role=head_role.id, policy=pulumi.Output.all(
                *args.healer_role_arns).apply(lambda arns: json.dumps(policies.head_permissions(arns))), opts=child)
        self.node_instance_profile = iam.InstanceProfile(f"{name}-node-profile", role=node_role.name, opts=child)
        self.head_instance_profile = iam.InstanceProfile(f"{name}-head-profile", role=head_role.name, opts=child)
        self.head_role_arn = head_role.arn
        if args.collector is not None:
            # The head's bootstrap installs the collector's files: they are part of what it waits for.
            self.bundle_objects += install_collector(
                f"{name}-collector", args.collector, account_id=args.account_id, region=args.region,
                head_role=head_role, bucket_id=self.bucket.id, object_key=plan.object_key, opts=child)

        if args.healer_files is not None:
            # Beside the bundle, not in its digest: a control-plane change must not roll the GPU nodes.
            self.bundle_objects += [
                s3.BucketObjectv2(f"{name}-healer-{path.replace('/', '-')}", bucket=self.bucket.id,
                                  key=plan.object_key(f"{HEALER_DIR}/{path}"), content=text, content_type="text/plain",
                                  opts=child)
                for path, text in sorted(args.healer_files.items())]

        head_env = self.node_env(NodeParams(role=NodeRole.SLURM_HEAD, region=args.region,
                                            bundle_version=plan.version, instance_type=args.head_instance_type))
        self.head = SlurmHost(f"{name}-head", SlurmHostArgs(
            cluster=self, role=NodeRole.SLURM_HEAD, node_env=head_env, env_path="nodes/slurm-head.env",
            instance_type=args.head_instance_type, subnet_id=args.head_subnet_id, private_ip=plan.head_address,
            instance_profile_name=self.head_instance_profile.name, volume_gib=args.head_volume_gib),
            opts=child)

        self.security_group_id = self.security_group.id
        self.node_instance_profile_arn = self.node_instance_profile.arn
        self.munge_secret_arn = self.munge_secret.arn
        self.bucket_name = self.bucket.bucket_name
        self.head_instance_id = self.head.instance.id
        self.head_address = plan.head_address
        self.register_outputs({"securityGroupId": self.security_group_id, "bucketName": self.bucket_name,
                               "headInstanceId": self.head_instance_id, "headAddress": self.head_address,
                               "mungeSecretArn": self.munge_secret_arn})

    def node_env(self, params: NodeParams, fsx: FsxMount | None = None) -> pulumi.Output[str]:
        """A node's parameters file: ``params`` plus the munge secret and the file system."""
        def render(values: list[str]) -> str:
            secret_arn, dns, mount_name = values
            filled = replace(params, munge_secret_id=secret_arn)
            if fsx is not None:
                filled = replace(filled, fsx_dns_name=dns, fsx_mount_name=mount_name, fsx_mount_path=fsx.mount_path)
            return render_node_env(filled.to_env())
        return pulumi.Output.all(self.munge_secret.arn, fsx.dns_name if fsx else "",
                                 fsx.mount_name if fsx else "").apply(render)

    def user_data(self, env_path: str) -> str:
        """Base64 user data that fetches this bundle version and bootstraps with ``env_path``."""
        text = render_user_data(UserDataParams(bundle_uri=self.plan.bundle_uri, node_env_path=env_path,
                                               region=self.region))
        return base64.b64encode(text.encode()).decode()

    def group_user_data(self, group: str) -> str:
        return self.user_data(f"nodes/{group}.env")


def head_image(image_id: pulumi.Input[str], parent: pulumi.Resource) -> pulumi.Input[str]:
    """An ``ami-`` id for an instance. With a root block device the provider calls DescribeImages
    with the raw ``resolve:ssm:`` string, which EC2 rejects (InvalidAMIID.Malformed;
    terraform-provider-aws #43488), so the parameter is read at deploy time instead."""
    if isinstance(image_id, str) and image_id.startswith(RESOLVE_SSM):
        return ssm.get_parameter_output(name=image_id.removeprefix(RESOLVE_SSM),
                                        opts=pulumi.InvokeOutputOptions(parent=parent)).value
    return image_id


@dataclass(frozen=True, kw_only=True)
class SlurmHostArgs:
    cluster: SlurmCluster
    """The cluster the host belongs to."""
    role: NodeRole
    """slurm-head or slurm-login."""
    node_env: pulumi.Input[str]
    """The host's parameters file (``SlurmCluster.node_env``)."""
    env_path: str
    """Where the parameters file sits in the bundle."""
    instance_type: str
    """EC2 instance type."""
    subnet_id: pulumi.Input[str]
    """Private subnet."""
    instance_profile_name: pulumi.Input[str]
    """Instance profile (the head's may write the munge secret)."""
    private_ip: str | None = None
    """Fixed address (the head node: slurm.conf names it); None lets AWS choose."""
    volume_gib: int = 100
    """Encrypted gp3 root volume."""

    def __post_init__(self) -> None:
        if self.role not in (NodeRole.SLURM_HEAD, NodeRole.SLURM_LOGIN):
            raise ValueError(f"role: {self.role.value!r} is not a host role (slurm-head, slurm-login)")


class SlurmHost(pulumi.ComponentResource):
    """The head node or the login node: its parameters file in the bundle and its instance."""

    def __init__(self, name: str, args: SlurmHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:slurm:SlurmHost", name, None, opts)
        cluster = args.cluster
        self.env_object = s3.BucketObjectv2(
            f"{name}-env", bucket=cluster.bucket.id, key=cluster.plan.object_key(args.env_path),
            content=args.node_env, content_type="text/plain", opts=pulumi.ResourceOptions(parent=self))
        self.instance = ec2.Instance(
            f"{name}-instance",
            ami=head_image(cluster.image_id, self),
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            private_ip=args.private_ip,
            associate_public_ip_address=False,
            vpc_security_group_ids=[cluster.security_group.id],
            iam_instance_profile=args.instance_profile_name,
            user_data_base64=cluster.user_data(args.env_path),
            user_data_replace_on_change=False,
            metadata_options=ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            root_block_device=ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=args.volume_gib, encrypted=True, kms_key_id=cluster.key.arn,
                delete_on_termination=True),
            # Simplified automatic recovery on a failed system check (MetricsForwarding's alarm
            # recovers too, and pages): same instance id, private address and volumes.
            maintenance_options=ec2.InstanceMaintenanceOptionsArgs(auto_recovery="default"),
            tags={"Name": name, "gpufleet:slurm-role": args.role.value},
            # The bootstrap reads its parameters and the bundle from S3 at first boot. A newer image
            # never replaces the host silently (ignore_changes); an operator rolls it with
            # `pulumi up --replace <urn>` after draining (docs/slurm.md). Its fixed address is taken
            # until the old instance is gone, hence delete before replace.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.env_object, *cluster.bundle_objects],
                                        ignore_changes=["ami"], delete_before_replace=True),
        )
        self.register_outputs({"instanceId": self.instance.id})


@dataclass(frozen=True, kw_only=True)
class SlurmNodeGroupArgs:
    cluster: SlurmCluster
    """The cluster the nodes join."""
    node_group: NodeGroupSpec
    """The node group as the stack file declares it (validated there); its name is the partition."""
    num_gpus: int
    """GPUs per node."""
    efa_interfaces: int
    """EFA interfaces per node (the bootstrap checks fi_info lists them all)."""
    launch_template_id: pulumi.Input[str]
    """The group's EfaNodeTemplate, carrying ``SlurmCluster.group_user_data(group)``."""
    launch_template_version: pulumi.Input[str]
    """Template version to launch."""
    subnet_id: pulumi.Input[str]
    """Private subnet in the AZ of the group's pool."""
    fsx: FsxMount | None = None
    """The file system the nodes mount."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """More tags for the Auto Scaling group and its instances (the stack's ``gpufleet:stack``/``gpufleet:role``)."""


class SlurmNodeGroup(pulumi.ComponentResource):
    """One GPU partition's nodes: parameters file in the bundle and the Auto Scaling group.

    Outputs: ``asg_name``, and ``asg_tags`` (the tags on the group, as AWS will show them).
    """

    def __init__(self, name: str, args: SlurmNodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:slurm:SlurmNodeGroup", name, None, opts)
        cluster = args.cluster
        group = args.node_group
        partition = cluster.plan.cluster.partition(group.name)
        params = NodeParams(
            role=NodeRole.SLURM_COMPUTE, region=cluster.region, bundle_version=cluster.plan.version,
            node_group=group.name, instance_type=group.instance_type, num_gpus=args.num_gpus,
            efa_interfaces=args.efa_interfaces, slurm_node_conf=partition.dynamic_node_conf())
        self.env_object = s3.BucketObjectv2(
            f"{name}-env", bucket=cluster.bucket.id, key=cluster.plan.object_key(f"nodes/{group.name}.env"),
            content=cluster.node_env(params, args.fsx), content_type="text/plain",
            opts=pulumi.ResourceOptions(parent=self))
        self.asg_tags: dict[str, str] = {**args.tags, "gpufleet:node-group": group.name,
                                         "gpufleet:orchestrator": "slurm", "gpufleet:slurm-partition": partition.name}
        self.group = gpu_node_asg(
            f"{name}-asg",
            AsgNodeGroupArgs(node_group=group, launch_template_id=args.launch_template_id,
                             launch_template_version=args.launch_template_version, subnet_id=args.subnet_id,
                             orchestrator="slurm"),
            tags=self.asg_tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Nodes fetch their parameters and the bundle at boot; the head must be up to register.
                depends_on=[self.env_object, cluster.head.instance, *cluster.bundle_objects]),
        )
        self.asg_name = self.group.name
        self.register_outputs({"asgName": self.asg_name})


def _node_role(name: str, bucket_arn: pulumi.Input[str], secret_arn: pulumi.Input[str], key_arn: pulumi.Input[str],
               *, can_write_secret: bool, opts: pulumi.ResourceOptions, role_name: str | None = None) -> iam.Role:
    role = iam.Role(name, name=role_name, assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}), opts=opts)
    iam.RolePolicyAttachment(f"{name}-ssm", role=role.name, policy_arn=SSM_CORE_POLICY, opts=opts)

    def policy(args: list[str]) -> str:
        bucket, secret, key = args
        secret_actions = ["secretsmanager:GetSecretValue"]
        if can_write_secret:
            secret_actions.append("secretsmanager:PutSecretValue")
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadLifecycleBundle", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [bucket, f"{bucket}/*"]},
            {"Sid": "MungeKey", "Effect": "Allow", "Action": secret_actions, "Resource": [secret]},
            {"Sid": "DecryptWithClusterKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
             "Resource": [key]},
        ]})
    iam.RolePolicy(f"{name}-access", role=role.id,
                   policy=pulumi.Output.all(bucket_arn, secret_arn, key_arn).apply(policy), opts=opts)
    return role

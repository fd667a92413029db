"""An EKS control plane for GPU node groups: CMK-encrypted secrets and logs, access entries, a small
CPU system node group and the managed add-ons. GPU node groups are ``EksGpuNodeGroup``s (their
launch templates need this cluster's security group, so they are built after it)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_eks
from pulumi_aws import cloudwatch, ec2, eks, iam

from gpufleet.infra import eks_scheduling, key_policies
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.image_family import ImageFamily
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION, ROLE_ARN
from gpufleet.lifecycle.bootstrap.nodeadm import EksClusterParams

__all__ = ["EksGpuCluster", "EksGpuClusterArgs", "MANAGED_ADDONS", "ManagedAddon", "OPERATOR_GROUP"]

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CLUSTER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,99}$")
ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
OPERATOR_GROUP = "gpufleet-operators"
"""Kubernetes group of the operator role: cordon and drain only (RBAC in EksGpuWorkloads)."""
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"
SERVICE_CIDR = "172.20.0.0/16"
"""Kubernetes service addresses, set rather than left to EKS's pick, so GPU nodes' NodeConfig names
it without a DescribeCluster call (outside the VPC blocks of the reference stacks)."""
SYSTEM_IMAGE_FAMILY = ImageFamily.AL2023_EKS_GPU
"""The system nodes' AL2023 image maps its root like the GPU image (/dev/xvda)."""


@dataclass(frozen=True, kw_only=True)
class ManagedAddon:
    """An EKS managed add-on."""

    name: str
    """EKS add-on name."""
    before_nodes: bool
    """Must exist before nodes join (CNI, kube-proxy): nodes stay NotReady without them."""
    configuration: dict[str, object] | None = None
    """Add-on configuration values (``aws eks describe-addon-configuration`` gives the schema)."""


MANAGED_ADDONS = (
    ManagedAddon(name="vpc-cni", before_nodes=True),
    ManagedAddon(name="kube-proxy", before_nodes=True),
    ManagedAddon(name="eks-pod-identity-agent", before_nodes=True),
    ManagedAddon(name="coredns", before_nodes=False,
                 configuration={"nodeSelector": {eks_scheduling.SYSTEM_LABEL: "true"}}),
    # Static provisioning only (the training file system is created by LustreStorage): the node
    # daemon mounts, the controller needs no AWS permissions. It must run on tainted GPU nodes.
    ManagedAddon(name="aws-fsx-csi-driver", before_nodes=False,
                 configuration={"node": {"tolerateAllTaints": True}}),
)


@dataclass(frozen=True, kw_only=True)
class EksGpuClusterArgs:
    cluster_name: str
    """Physical EKS cluster name, unique in the account and region."""
    account_id: str
    """Account of the cluster; owns its key."""
    region: str
    """Region of the cluster."""
    vpc_id: pulumi.Input[str]
    """VPC of the cluster (the Network's)."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets, at least two AZs (an EKS requirement): control plane ENIs and system nodes."""
    holds_phi: bool
    """The account holds patient data: the API endpoint is private only."""
    public_access_cidrs: tuple[str, ...] = ()
    """CIDRs that may reach the public API endpoint; empty: no public endpoint."""
    admin_role_arns: tuple[str, ...] = ()
    """IAM roles granted cluster admin through access entries (not the deploy role: EKS already
    made the cluster's creator an admin, and a second entry for it fails)."""
    operator_role_arn: pulumi.Input[str] | None = None
    """The fleet operator role: mapped to the ``gpufleet-operators`` group (cordon and drain)."""
    deploy_role_arn: str | None = None
    """The stack's deploy role (the AWS provider assumes it): the kubeconfig the program's
    Kubernetes provider uses gets its token as this role, not from ambient credentials."""
    kubernetes_version: str = "1.33"
    """EKS Kubernetes version."""
    system_instance_type: str = "m7i.xlarge"
    """Instance type of the CPU system node group (CoreDNS, controllers, Kueue)."""
    num_system_nodes: int = 2
    """Nodes in the system group, spread over the subnets."""
    log_retention_days: int = 365
    """Retention of the control plane log group."""
    tags: dict[str, str] = field(default_factory=dict)
    """Extra tags for the cluster."""

    def __post_init__(self) -> None:
        if not CLUSTER_NAME.match(self.cluster_name):
            raise ValueError(f"cluster_name: {self.cluster_name!r} must start with a letter and hold "
                             "letters, digits and dashes (at most 100)")
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        if len(self.subnet_ids) < 2:
            raise ValueError(f"subnet_ids: EKS needs subnets in at least two AZs, got {len(self.subnet_ids)}")
        if self.holds_phi and self.public_access_cidrs:
            raise ValueError(f"public_access_cidrs: {list(self.public_access_cidrs)!r} given, but a stack "
                             "that holds PHI has a private API endpoint only")
        for cidr in self.public_access_cidrs:
            try:
                net = ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"public_access_cidrs: {cidr!r} is not a CIDR block") from None
            if net.prefixlen == 0:
                raise ValueError(f"public_access_cidrs: {cidr!r} opens the API endpoint to the internet")
        if self.deploy_role_arn is not None:
            match = ROLE_ARN.match(self.deploy_role_arn)
            if not match or match.group(1) != self.account_id:
                raise ValueError(f"deploy_role_arn: {self.deploy_role_arn!r} must be an IAM role in account "
                                 f"{self.account_id}")
        for arn in self.admin_role_arns:
            match = ROLE_ARN.match(arn)
            if not match or match.group(1) != self.account_id:
                raise ValueError(f"admin_role_arns: {arn!r} must be an IAM role in account {self.account_id}")
        if not 1 <= self.num_system_nodes <= 10:
            raise ValueError(f"num_system_nodes: {self.num_system_nodes!r} must be 1-10")

    @property
    def endpoint_public_access(self) -> bool:
        return not self.holds_phi and bool(self.public_access_cidrs)


class EksGpuCluster(pulumi.ComponentResource):
    """Outputs: ``cluster_name``, ``kubeconfig`` (secret JSON), ``join`` (EksClusterParams), ``node_role_arn``,
    ``node_security_group_id`` (the EKS cluster security group every node must carry)."""

    def __init__(self, name: str, args: EksGpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:eks:EksGpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        self.key = EncryptionKey(f"{name}-key", EncryptionKeyArgs(
            description=f"EKS {args.cluster_name}: secrets, control plane logs, system node volumes",
            account_id=args.account_id, region=args.region,
            services=(KeyService.LOGS, KeyService.AUTOSCALING)), opts=child)
        # EKS would create this group itself, unencrypted and kept forever; creating it first wins.
        self.log_group = cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days, kms_key_id=self.key.arn, opts=child)

        access_entries = {
            f"admin-{i}": pulumi_eks.AccessEntryArgs(
                principal_arn=arn, type=pulumi_eks.AccessEntryType.STANDARD,
                access_policies={"admin": pulumi_eks.AccessPolicyAssociationArgs(
                    policy_arn=ADMIN_POLICY.format(partition=partition),
                    access_scope=eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"))})
            for i, arn in enumerate(args.admin_role_arns)
        }
        if args.operator_role_arn is not None:
            access_entries["operator"] = pulumi_eks.AccessEntryArgs(
                principal_arn=args.operator_role_arn, type=pulumi_eks.AccessEntryType.STANDARD,
                kubernetes_groups=[OPERATOR_GROUP])
        # Node roles get no entry here: EKS creates (and removes) the EC2_LINUX entry of a managed
        # node group's role itself, so Pulumi and EKS never fight over it.
        self.control_plane = pulumi_eks.Cluster(
            f"{name}-control-plane",
            name=args.cluster_name,
            version=args.kubernetes_version,
            kubernetes_service_ip_address_range=SERVICE_CIDR,
            vpc_id=args.vpc_id,
            private_subnet_ids=list(args.subnet_ids),
            endpoint_private_access=True,
            endpoint_public_access=args.endpoint_public_access,
            public_access_cidrs=list(args.public_access_cidrs) if args.endpoint_public_access else None,
            # EKS uses the key through a grant made with the deploying role's permissions (the key
            # policy delegates to IAM), so the component's own service role needs no KMS policy.
            encryption_config_key_arn=self.key.arn,
            authentication_mode=pulumi_eks.AuthenticationMode.API,
            access_entries=access_entries,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            skip_default_node_group=True,
            create_instance_role=False,
            # Every node carries the security group EKS makes for the cluster (all traffic among
            # members and the control plane); GPU nodes add their EFA group.
            skip_default_security_groups=True,
            # The add-ons below are EKS managed add-ons, not the component's own.
            use_default_vpc_cni=True,
            bootstrap_self_managed_addons=False,
            coredns_addon_options=pulumi_eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=pulumi_eks.KubeProxyAddonOptionsArgs(enabled=False),
            deletion_protection=args.holds_phi,
            # The creator of the cluster (the deploy role) is its admin; the kubeconfig must
            # authenticate as that role (`aws eks get-token --role-arn`), whatever credentials
            # the person or CI running `pulumi up` holds.
            provider_credential_opts=(pulumi_eks.KubeconfigOptionsArgs(role_arn=args.deploy_role_arn)
                                      if args.deploy_role_arn is not None else None),
            tags={"gpufleet:cluster": args.cluster_name, **args.tags},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group]),
        )
        # The physical name, carrying the dependency on the control plane (its children arrive
        # through a remote component, so the name is ours rather than read back from them).
        self.cluster_name: pulumi.Output[str] = self.control_plane.urn.apply(lambda _: args.cluster_name)
        self.endpoint_access = "public+private" if args.endpoint_public_access else "private"
        self.node_security_group_id = self.control_plane.node_security_group_id
        self.kubeconfig = pulumi.Output.secret(self.control_plane.kubeconfig_json)
        # What nodeadm needs to join: the kubeconfig carries the endpoint and the CA.
        self.join = pulumi.Output.all(self.cluster_name, self.control_plane.kubeconfig_json).apply(
            lambda values: join_params(*values))
        self.node_role = self._node_role(name, args, partition, child)
        self.node_role_arn = self.node_role.arn

        self.addons: dict[str, eks.Addon] = {}
        for addon in (a for a in MANAGED_ADDONS if a.before_nodes):
            self.addons[addon.name] = self._addon(name, addon, [], child)
        self.system_nodes = self._system_node_group(name, args, list(self.addons.values()), child)
        for addon in (a for a in MANAGED_ADDONS if not a.before_nodes):
            self.addons[addon.name] = self._addon(name, addon, [self.system_nodes], child)
        self.register_outputs({"clusterName": self.cluster_name, "nodeRoleArn": self.node_role_arn})

    def _node_role(self, name: str, args: EksGpuClusterArgs, partition: str,
                   child: pulumi.ResourceOptions) -> iam.Role:
        role = iam.Role(f"{name}-node-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}), opts=child)
        policies = ["AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy"]
        if not args.holds_phi:
            # Session Manager for debugging training nodes; the PHI account allows no interactive access.
            policies.append("AmazonSSMManagedInstanceCore")
        for policy in policies:
            iam.RolePolicyAttachment(f"{name}-node-{policy}", role=role.name,
                                     policy_arn=f"arn:{partition}:iam::aws:policy/{policy}", opts=child)
        return role

    def _addon(self, name: str, addon: ManagedAddon, after: list[pulumi.Resource],
               child: pulumi.ResourceOptions) -> eks.Addon:
        return eks.Addon(
            f"{name}-{addon.name}", cluster_name=self.cluster_name, addon_name=addon.name,
            configuration_values=json.dumps(addon.configuration) if addon.configuration else None,
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=after)))

    def _system_node_group(self, name: str, args: EksGpuClusterArgs, after: list[pulumi.Resource],
                           child: pulumi.ResourceOptions) -> eks.NodeGroup:
        template = ec2.LaunchTemplate(
            f"{name}-system-lt",
            update_default_version=True,
            vpc_security_group_ids=[self.node_security_group_id],
            metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
                # Pods use Pod Identity; node daemons that read IMDS run in the host network.
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled"),
            block_device_mappings=[ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=SYSTEM_IMAGE_FAMILY.root_device,
                ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3", volume_size=50, encrypted="true", kms_key_id=self.key.arn,
                    delete_on_termination="true"))],
            opts=child)
        return eks.NodeGroup(
            f"{name}-system",
            node_group_name="system",  # named like the GPU groups; the operator never scales it
            cluster_name=self.cluster_name,
            node_role_arn=self.node_role.arn,
            subnet_ids=list(args.subnet_ids),
            instance_types=[args.system_instance_type],
            ami_type=SYSTEM_AMI_TYPE,
            capacity_type="ON_DEMAND",
            scaling_config=eks.NodeGroupScalingConfigArgs(
                min_size=args.num_system_nodes, max_size=2 * args.num_system_nodes,
                desired_size=args.num_system_nodes),
            launch_template=eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)),
            labels={eks_scheduling.SYSTEM_LABEL: "true"},
            update_config=eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            tags={"gpufleet:node-group": "system"},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=after, ignore_changes=["scalingConfig.desiredSize"])),
        )


def join_params(cluster_name: str, kubeconfig: str | dict) -> EksClusterParams:
    """The cluster's name, endpoint, CA (from its kubeconfig) and service CIDR, for nodeadm."""
    config = json.loads(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    [entry] = config["clusters"]
    return EksClusterParams(name=cluster_name, api_server_endpoint=entry["cluster"]["server"],
                            certificate_authority=entry["cluster"]["certificate-authority-data"],
                            service_cidr=SERVICE_CIDR)

"""FSx for Lustre (PERSISTENT_2) linked to an encrypted S3 dataset bucket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import ec2, fsx

from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs, KeyService
from gpufleet.infra.secure_bucket import BucketOrigin, SecureBucket, SecureBucketArgs
from gpufleet.infra.stackfile import ACCOUNT_ID, FSX_THROUGHPUT_PER_TIB, REGION

__all__ = ["LustreStorage", "LustreStorageArgs"]

LUSTRE_PORTS = ((988, 988), (1018, 1023))
"""LNet on 988; the Lustre client and servers also use 1018-1023."""
REPOSITORY_EVENTS = ("NEW", "CHANGED", "DELETED")
"""Every event kind, both ways: the bucket and the file system stay in step."""
LUSTRE_VERSION = "2.15"


@dataclass(frozen=True, kw_only=True)
class LustreStorageArgs:
    vpc_id: pulumi.Input[str]
    """VPC of the file system's security group."""
    subnet_id: pulumi.Input[str]
    """ONE subnet (PERSISTENT_2 lives in one AZ): put it in the AZ of the GPU nodes."""
    account_id: str
    """Account of the key and bucket."""
    region: str
    """Region of the key and bucket."""
    fsx_capacity_gib: int
    """1200 or a multiple of 2400."""
    fsx_throughput_per_tib: int
    """MB/s per TiB: 125, 250, 500 or 1000."""
    fsx_import_prefix: str = "datasets/"
    """Bucket prefix linked to the file system (import and export)."""
    fsx_file_system_path: str = "/datasets"
    """Where the linked prefix appears inside the file system."""
    client_security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    """Security groups of the nodes that mount the file system."""

    def __post_init__(self) -> None:
        if self.fsx_capacity_gib != 1200 and (self.fsx_capacity_gib <= 0 or self.fsx_capacity_gib % 2400):
            raise ValueError(f"fsx_capacity_gib: {self.fsx_capacity_gib!r} must be 1200 or a multiple of 2400")
        if self.fsx_throughput_per_tib not in FSX_THROUGHPUT_PER_TIB:
            raise ValueError(f"fsx_throughput_per_tib: {self.fsx_throughput_per_tib!r} must be one of "
                             f"{FSX_THROUGHPUT_PER_TIB}")
        if not self.fsx_file_system_path.startswith("/") or self.fsx_file_system_path == "/":
            raise ValueError(f"fsx_file_system_path: {self.fsx_file_system_path!r} must be an absolute path below /")
        if self.fsx_import_prefix.startswith("/"):
            raise ValueError(f"fsx_import_prefix: {self.fsx_import_prefix!r} is a key prefix, without a leading /")
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")


class LustreStorage(pulumi.ComponentResource):
    """Outputs: ``file_system_id``, ``dns_name``, ``mount_name``, ``bucket_name``, ``security_group_id``."""

    def __init__(self, name: str, args: LustreStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:storage:LustreStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(f"{name}-key", EncryptionKeyArgs(
            description=f"{name}: dataset bucket and Lustre file system",
            account_id=args.account_id, region=args.region, services=(KeyService.FSX_DATA_REPOSITORY,)), opts=child)

        self.bucket = SecureBucket(f"{name}-datasets", SecureBucketArgs(
            kms_key_arn=key.arn, moved_from=BucketOrigin(parent=self, policy_name=f"{name}-datasets-tls-only")),
            opts=child)

        ingress = []
        egress = []
        for low, high in LUSTRE_PORTS:
            ingress.append(ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=low, to_port=high, self=True, description="Lustre between servers"))
            egress.append(ec2.SecurityGroupEgressArgs(
                protocol="tcp", from_port=low, to_port=high, self=True, description="Lustre between servers"))
            if args.client_security_group_ids:
                ingress.append(ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=low, to_port=high,
                    security_groups=list(args.client_security_group_ids), description="Lustre clients"))
                egress.append(ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=low, to_port=high,
                    security_groups=list(args.client_security_group_ids), description="Lustre clients"))
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description=f"{name}: FSx for Lustre",
            ingress=ingress, egress=egress, opts=child)

        self.file_system = fsx.LustreFileSystem(
            f"{name}-fsx",
            deployment_type="PERSISTENT_2",
            storage_type="SSD",
            storage_capacity=args.fsx_capacity_gib,
            per_unit_storage_throughput=args.fsx_throughput_per_tib,
            subnet_ids=args.subnet_id,
            security_group_ids=[self.security_group.id],
            kms_key_id=key.arn,
            file_system_type_version=LUSTRE_VERSION,
            data_compression_type="LZ4",
            automatic_backup_retention_days=7,
            copy_tags_to_backups=True,
            opts=child,
        )
        self.association = fsx.DataRepositoryAssociation(
            f"{name}-dra",
            file_system_id=self.file_system.id,
            file_system_path=args.fsx_file_system_path,
            data_repository_path=self.bucket.bucket_name.apply(lambda b: f"s3://{b}/{args.fsx_import_prefix}"),
            batch_import_meta_data_on_create=True,
            s3=fsx.DataRepositoryAssociationS3Args(
                auto_import_policy=fsx.DataRepositoryAssociationS3AutoImportPolicyArgs(events=list(REPOSITORY_EVENTS)),
                auto_export_policy=fsx.DataRepositoryAssociationS3AutoExportPolicyArgs(events=list(REPOSITORY_EVENTS)),
            ),
            opts=child,
        )

        self.file_system_id = self.file_system.id
        self.dns_name = self.file_system.dns_name
        self.mount_name = self.file_system.mount_name
        self.bucket_name = self.bucket.bucket_name
        self.security_group_id = self.security_group.id
        self.register_outputs({"fileSystemId": self.file_system_id, "bucketName": self.bucket_name})


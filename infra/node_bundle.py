"""The lifecycle bundle of a cluster whose nodes are not Slurm's (EKS): an encrypted bucket in the
stack's own account holding the node package under ``lifecycle/<version>/``, one parameters file
per node group, and the node role's right to read them.

Slurm clusters keep their bundle in SlurmCluster (it also holds slurm.conf and the munge key);
this is the same layout without them, so the same user data script fetches either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

import pulumi
from pulumi_aws import iam, s3

from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs
from gpufleet.infra.secure_bucket import SecureBucket, SecureBucketArgs
from gpufleet.lifecycle.bootstrap.bundle import bundle_version, package_files
from gpufleet.lifecycle.bootstrap.user_data import NodeParams, render_node_env

__all__ = ["NodeBundle", "NodeBundleArgs", "BUNDLE_PREFIX"]

BUNDLE_PREFIX = "lifecycle"


@dataclass(frozen=True, kw_only=True)
class NodeBundleArgs:
    bucket_name: str
    """Physical name of the bundle bucket (globally unique: stack, account, region)."""
    account_id: str
    """Account of the bucket and its key."""
    region: str
    """Region of the bucket."""
    node_role_name: pulumi.Input[str]
    """IAM role of the nodes, allowed to read the bundle and decrypt it."""
    node_envs: Mapping[str, NodeParams]
    """Node group -> its parameters, stored as ``nodes/<group>.env`` with the bundle's version filled in."""


class NodeBundle(pulumi.ComponentResource):
    """Outputs: ``bucket_name``, ``bundle_uri`` (``s3://bucket/lifecycle/<version>/``), ``version``,
    ``objects`` (for ``depends_on`` of the node groups)."""

    def __init__(self, name: str, args: NodeBundleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:compute:NodeBundle", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        package = package_files()
        # As for Slurm, the digest covers the package: parameters files live beside it, under its prefix.
        self.version = bundle_version(package)
        files = {**package, **{f"nodes/{group}.env": render_node_env(replace(params, bundle_version=self.version).to_env())
                               for group, params in sorted(args.node_envs.items())}}
        self.key = EncryptionKey(f"{name}-key", EncryptionKeyArgs(
            description=f"{name}: node lifecycle bundle", account_id=args.account_id, region=args.region), opts=child)
        # force_destroy: the bundle is the program's own output, deleted with the stack.
        self.bucket = SecureBucket(f"{name}-bucket", SecureBucketArgs(
            kms_key_arn=self.key.arn, bucket_name=args.bucket_name, force_destroy=True), opts=child)
        self.bucket_name = args.bucket_name
        self.bundle_uri = f"s3://{args.bucket_name}/{BUNDLE_PREFIX}/{self.version}/"
        self.objects = [
            s3.BucketObjectv2(f"{name}-{path.replace('/', '-')}", bucket=self.bucket.id,
                              key=f"{BUNDLE_PREFIX}/{self.version}/{path}", content=text,
                              content_type="text/plain", opts=child)
            for path, text in sorted(files.items())
        ]

        def policy(arns: list[str]) -> str:
            bucket, key = arns
            return json.dumps({"Version": "2012-10-17", "Statement": [
                {"Sid": "ReadLifecycleBundle", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                 "Resource": [bucket, f"{bucket}/*"]},
                {"Sid": "DecryptBundle", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key]},
            ]})
        iam.RolePolicy(f"{name}-read", role=args.node_role_name,
                       policy=pulumi.Output.all(self.bucket.arn, self.key.arn).apply(policy), opts=child)
        self.register_outputs({"bucketName": self.bucket_name})

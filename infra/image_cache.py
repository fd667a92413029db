"""The platform's image cache: ECR pull-through cache rules for the public registries the EKS
workloads use, the chart repositories, and the policies that let the consumer accounts pull.

One cache in the platform account, not one per account: the upstream credential (nvcr.io) lives
in one place, nothing in the PHI account talks to an upstream registry or holds its credential,
and training and inference run byte-identical images (docs/eks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import ecr, kms, secretsmanager

from gpufleet.infra import key_policies, registry_mirror
from gpufleet.infra.stackfile import ACCOUNT_ID, REGION

__all__ = ["ImageCache", "ImageCacheArgs"]

PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
"""What a consumer node needs to pull an image that is in a repository."""
CACHE_FILL_ACTIONS = ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"]
"""What a consumer needs so its first pull of an uncached image fills the cache (AWS ECR user
guide, "Private registry policy for pull through cache" across accounts)."""


@dataclass(frozen=True, kw_only=True)
class ImageCacheArgs:
    account_id: str
    """The platform account: owns the registry."""
    region: str
    """Region of the registry (consumers pull in the same region)."""
    consumer_account_ids: tuple[str, ...] = ()
    """Accounts that pull images and charts."""
    charts: tuple[str, ...] = ()
    """Chart names mirrored as OCI artifacts under ``charts/``."""

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"account_id: {self.account_id!r} is not a 12-digit account id")
        if not REGION.match(self.region):
            raise ValueError(f"region: {self.region!r} is not an AWS region")
        for account in self.consumer_account_ids:
            if not ACCOUNT_ID.match(account) or account == self.account_id:
                raise ValueError(f"consumer_account_ids: {account!r} must be another 12-digit account id")


class ImageCache(pulumi.ComponentResource):
    """Outputs: ``registry`` (the registry host consumers pull from), ``credential_secret_arns``
    (upstream prefix -> the secret an operator fills with the registry's login)."""

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:images:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = key_policies.partition_of(args.region)
        consumers = [f"arn:{partition}:iam::{a}:root" for a in args.consumer_account_ids]
        statements = [key_policies.account_root_statement(partition, args.account_id)]
        if consumers:
            statements.append({
                "Sid": "ConsumersPullThroughEcr", "Effect": "Allow", "Principal": {"AWS": consumers},
                "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{args.region}.amazonaws.com"}}})
        self.key = kms.Key(f"{name}-key", description="ECR image cache, chart repositories and upstream credentials",
                           enable_key_rotation=True, deletion_window_in_days=30,
                           policy=json.dumps(key_policies.key_policy(statements)), opts=child)
        encryption = [ecr.RepositoryCreationTemplateEncryptionConfigurationArgs(
            encryption_type="KMS", kms_key=self.key.arn)]
        pull_policy = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "ConsumersPull", "Effect": "Allow", "Principal": {"AWS": consumers or [
                f"arn:{partition}:iam::{args.account_id}:root"]}, "Action": PULL_ACTIONS}]})

        self.credential_secret_arns: dict[str, pulumi.Output[str]] = {}
        for upstream in registry_mirror.UPSTREAMS:
            credential = None
            if upstream.needs_credential:
                # ECR reads the login from a secret whose name starts with ecr-pullthroughcache/;
                # its value ({"username": ..., "accessToken": ...}) is put by an operator, never in code.
                secret = secretsmanager.Secret(
                    f"{name}-{upstream.prefix}-credential", name=f"ecr-pullthroughcache/{upstream.prefix}",
                    description=f"Login for {upstream.registry} (pull-through cache)", kms_key_id=self.key.arn,
                    recovery_window_in_days=30, opts=child)
                credential = secret.arn
                self.credential_secret_arns[upstream.prefix] = secret.arn
            ecr.PullThroughCacheRule(f"{name}-{upstream.prefix}", ecr_repository_prefix=upstream.prefix,
                                     upstream_registry_url=upstream.registry, credential_arn=credential, opts=child)
            ecr.RepositoryCreationTemplate(
                f"{name}-{upstream.prefix}-template", prefix=upstream.prefix, applied_fors=["PULL_THROUGH_CACHE"],
                description=f"Cached {upstream.registry} images", image_tag_mutability="MUTABLE",
                encryption_configurations=encryption, repository_policy=pull_policy, opts=child)

        for chart in args.charts:
            repository = ecr.Repository(
                f"{name}-chart-{chart}", name=f"{registry_mirror.CHART_PREFIX}/{chart}", image_tag_mutability="IMMUTABLE",
                encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=self.key.arn)], opts=child)
            ecr.RepositoryPolicy(f"{name}-chart-{chart}-policy", repository=repository.name, policy=pull_policy,
                                 opts=child)

        if consumers:
            repositories = [f"arn:{partition}:ecr:{args.region}:{args.account_id}:repository/{u.prefix}/*"
                            for u in registry_mirror.UPSTREAMS]
            ecr.RegistryPolicy(f"{name}-registry-policy", policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "ConsumersFillTheCache", "Effect": "Allow", "Principal": {"AWS": consumers},
                "Action": CACHE_FILL_ACTIONS, "Resource": repositories}]}), opts=child)

        self.registry = registry_mirror.registry_host(args.account_id, args.region)
        self.register_outputs({"registry": self.registry})

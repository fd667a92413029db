"""The Slurm side's metrics collector: Prometheus in agent mode on the head node.

One collector on the head, not an agent per node: the head is the one host that is always up, it
already knows every node (slurmctld's node list is the discovery source, no EC2 API call and no
EC2 endpoint needed), a dead node shows as ``up == 0`` (an agent on the dead node would just go
silent), and one remote-write stream through one credential chain serves the whole cluster.

The config and the AWS profile are rendered here and uploaded beside the head's parameters file
(``nodes/slurm-head-collector.yml``, ``nodes/slurm-head-collector-aws.conf``); 70-join.sh installs
them. Credentials: head instance role -> ``gpufleet-metrics-collector`` (this account; the profile)
-> the platform's remote-write role (``sigv4.role_arn``; it trusts only the collector role).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pulumi
import yaml
from pulumi_aws import iam, s3

from gpufleet.infra import key_policies, metrics_agent
from gpufleet.infra.monitoring import COLLECTOR_ROLE

__all__ = ["CONFIG_PATH", "PROFILE_PATH", "SlurmCollectorArgs", "collector_role_arn", "install_collector",
           "render_config"]

CONFIG_PATH = "nodes/slurm-head-collector.yml"
"""The collector's prometheus.yml in the bundle."""
PROFILE_PATH = "nodes/slurm-head-collector-aws.conf"
"""Its AWS config file in the bundle."""


@dataclass(frozen=True, kw_only=True)
class SlurmCollectorArgs:
    stack: str
    """Stack name (the ``stack`` external label)."""
    remote_write_url: pulumi.Input[str]
    """The platform workspace's remote-write URL (platform export ``monitoring.remoteWriteUrl``)."""
    remote_write_role_arn: pulumi.Input[str]
    """The platform's remote-write role (``monitoring.remoteWriteRoleArn``)."""
    pools_by_group: Mapping[str, str] = field(default_factory=dict)
    """Node group -> capacity pool (the ``pool`` label)."""


def collector_role_arn(partition: str, account_id: str) -> str:
    """The account's collector role (MetricsForwarding creates it under this fixed name)."""
    return f"arn:{partition}:iam::{account_id}:role/{COLLECTOR_ROLE}"


def render_config(args: SlurmCollectorArgs, *, account_id: str, region: str, remote_write_url: str,
                  remote_write_role_arn: str, targets_dir: str | None = None) -> str:
    """The head collector's prometheus.yml as YAML text."""
    extra = {"targets_dir": targets_dir} if targets_dir is not None else {}
    config = metrics_agent.prometheus_config(
        account_id=account_id, stack=args.stack, region=region, remote_write_url=remote_write_url,
        remote_write_role_arn=remote_write_role_arn, profile=metrics_agent.COLLECTOR_PROFILE,
        scrape_configs=metrics_agent.slurm_scrape_configs(dict(args.pools_by_group), **extra))
    return yaml.safe_dump(config, sort_keys=False)


def install_collector(name: str, args: SlurmCollectorArgs, *, account_id: str, region: str,
                      head_role: iam.Role, bucket_id: pulumi.Input[str], object_key: Callable[[str], str],
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """The head role's right to assume the collector role, and the two files in the bundle.
    ``object_key`` maps a bundle path to its S3 key. Returns what the head must wait for."""
    role_arn = collector_role_arn(key_policies.partition_of(region), account_id)
    policy = iam.RolePolicy(f"{name}-assume-collector", role=head_role.id, policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "AssumeCollectorRole", "Effect": "Allow", "Action": "sts:AssumeRole",
                       "Resource": role_arn}]}), opts=opts)
    config = pulumi.Output.all(args.remote_write_url, args.remote_write_role_arn).apply(
        lambda a: render_config(args, account_id=account_id, region=region, remote_write_url=a[0],
                                remote_write_role_arn=a[1]))
    files = [
        s3.BucketObjectv2(f"{name}-config", bucket=bucket_id, key=object_key(CONFIG_PATH),
                          content=config, content_type="text/plain", opts=opts),
        s3.BucketObjectv2(f"{name}-aws-config", bucket=bucket_id, key=object_key(PROFILE_PATH),
                          content=metrics_agent.collector_aws_config(region=region, collector_role_arn=role_arn),
                          content_type="text/plain", opts=opts),
    ]
    return [policy, *files]

"""Policy documents of the account baseline, as plain dicts. Pure: no pulumi import.

Each function returns exactly what the guardrails (infra/guardrails) accept; tests feed them to the
rules directly, so a change that would fail the guardrails fails here first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from gpufleet.infra import key_policies

OPERATOR_ACTIONS = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
                    "autoscaling:UpdateAutoScalingGroup"]
"""Scale a node group and pick which instances leave it (drain happens in the orchestrator first)."""
STATUS_READS = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeScalingActivities", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
                "ec2:DescribeCapacityReservations", "cloudwatch:GetMetricData"]
"""What ``gpufleet status``, the rebalancer and the healers read in a consumer account (actions that
take no resource ARN: Resource "*"; GetMetricData: the groups' metrics for ``status --chart``;
DescribeCapacityReservations, "List" with no resource type in the Service Authorization Reference:
also a held healer's spare top-up, reading the shared reservation, heal/spare_slot.py)."""
NODE_GROUP_TAGS = ("gpufleet:node-group", "eks:nodegroup-name")
"""ASG tags naming the node group: ours (plain and Slurm ASGs) and the one EKS puts on managed groups
(its value is the node group's physical name, which EksGpuNodeGroup sets to the stack file's name;
https://docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html)."""
RELEASE_READ = ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation"]
RELEASE_WRITE = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", *RELEASE_READ]
HEALER_JOURNAL_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                          "dynamodb:Query", "dynamodb:Scan")
"""The journal's and the lease's calls (automation/rebalance/journal.py, automation/lease.py): items
only, no DescribeTable (the automation's table checks are not the healer's)."""
HEAD_ROLE_NAME = "gpufleet-slurm-head"
"""The Slurm head's instance role, one per account: a fixed name so trusts can name it before it exists."""
EKS_HEALER_ROLE_NAME = "gpufleet-eks-healer"
"""The EKS healer Deployment's role (Pod Identity), one per account: fixed, as the head's."""
HEALER_JOURNAL_ROLE_NAME = "gpufleet-healer-journal"
"""The platform role a training head's healer assumes for the journal and the leases."""
KMS_DECRYPT = ["kms:Decrypt", "kms:DescribeKey"]
KMS_ENCRYPT = ["kms:Encrypt", "kms:GenerateDataKey*", "kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey"]


def document(statements: Sequence[Mapping[str, object]]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [dict(s) for s in statements]}


def external_id(platform_account_id: str, account_id: str, stack: str) -> str:
    """The sts:ExternalId the platform presents. Not a secret: it stops a confused deputy (another
    caller of the platform's automation) from reaching this account's role."""
    digest = hashlib.sha256(f"{platform_account_id}:{account_id}:{stack}".encode()).hexdigest()[:24]
    return f"gpufleet-{stack}-{digest}"


def role_arn(partition: str, account_id: str, name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{name}"


def trail_arn(partition: str, region: str, account_id: str, name: str) -> str:
    return f"arn:{partition}:cloudtrail:{region}:{account_id}:trail/{name}"


def operator_trust(automation_role_arn: str, external: str, head_role_arn: str | None = None,
                   eks_healer_role_arn: str | None = None) -> dict[str, object]:
    """The platform's automation (with the external id); with ``head_role_arn``, also this account's
    Slurm head, whose healer drains and replaces the stack's nodes (same account: no external id);
    with ``eks_healer_role_arn``, the EKS healer Deployment's role likewise."""
    statements: list[dict[str, object]] = [{
        "Sid": "PlatformAutomation", "Effect": "Allow", "Principal": {"AWS": automation_role_arn},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": external}},
    }]
    if head_role_arn:
        statements.append(_by_principal_arn("SlurmHeadHealer", [head_role_arn]))
    if eks_healer_role_arn:
        statements.append(_by_principal_arn("EksHealer", [eks_healer_role_arn]))
    return document(statements)


def _by_principal_arn(sid: str, role_arns: Sequence[str]) -> dict[str, object]:
    """Trust named roles by ``aws:PrincipalArn`` under their accounts' root: AWS turns a role ARN in
    ``Principal`` into the role's unique id when the policy is saved, so a trust naming a role that
    does not exist yet (the head is built after the baseline) or is recreated would be rejected or
    silently stop matching; the condition key is compared as written."""
    accounts = sorted({arn.split(":")[4] for arn in role_arns})
    partition = role_arns[0].split(":")[1]
    return {"Sid": sid, "Effect": "Allow",
            "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in accounts]}, "Action": "sts:AssumeRole",
            "Condition": {"ArnEquals": {"aws:PrincipalArn": sorted(role_arns)}}}


def healer_journal_trust(healer_role_arns: Sequence[str]) -> dict[str, object]:
    """The training accounts' healers only, their Slurm heads' and their EKS Deployments' roles
    (never an inference account's: it holds PHI)."""
    return document([_by_principal_arn("TrainingHealers", healer_role_arns)])


def pod_identity_trust(account_id: str, cluster_name: str, namespace: str, service_account: str) -> dict[str, object]:
    """EKS Pod Identity (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html): the
    service assumes the role and tags the session, so both actions; the session tags it sets
    (cluster, namespace, service account) hold the role to one ServiceAccount of one cluster of
    this account, whatever association someone else might add."""
    return document([{
        "Sid": "EksPodIdentity", "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id,
                                       "aws:RequestTag/eks-cluster-name": cluster_name,
                                       "aws:RequestTag/kubernetes-namespace": namespace,
                                       "aws:RequestTag/kubernetes-service-account": service_account}}}])


def healer_journal_permissions(partition: str, region: str, account_id: str, journal_table: str) -> dict[str, object]:
    """What a heal pass and its lease do in the platform account: the journal table's items (ops,
    events, pool leases: one table) through its key, nothing else."""
    return document([
        {"Sid": "Journal", "Effect": "Allow",
         "Resource": f"arn:{partition}:dynamodb:{region}:{account_id}:table/{journal_table}",
         "Action": list(HEALER_JOURNAL_ACTIONS)},
        _journal_key(partition, region, account_id),
    ])


def head_permissions(role_arns: Sequence[str]) -> dict[str, object]:
    """The Slurm head's healer: its own account's operator role, and (training) the platform's
    healer journal role."""
    return document([{"Sid": "AssumeHealerRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                      "Resource": sorted(role_arns)}])


def _journal_key(partition: str, region: str, account_id: str) -> dict[str, object]:
    return {"Sid": "JournalKey", "Effect": "Allow", "Resource": f"arn:{partition}:kms:{region}:{account_id}:key/*",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Condition": {"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}}


def operator_permissions(partition: str, region: str, account_id: str, node_groups: Sequence[str],
                         eks_node_groups: Sequence[str] = (), enable_ssm_probe: bool = False) -> dict[str, object]:
    """Scale and drain exactly this stack's node groups (``node_groups``: Auto Scaling groups we
    tag ``gpufleet:node-group``; ``eks_node_groups``: EKS managed node groups, whose groups EKS tags
    ``eks:nodegroup-name``), read what status needs; with ``enable_ssm_probe`` (accounts where SSM
    is allowed: never the PHI account) run the health probe on this account's instances through
    SSM's AWS-RunShellScript document. Only statements some workflow needs are rendered (the
    sandbox's statement-mutation test proves each one)."""
    statements: list[dict[str, object]] = [
        {"Sid": "ReadFleetState", "Effect": "Allow", "Action": list(STATUS_READS), "Resource": "*"}]
    # An Auto Scaling group's ARN carries a generated id, so the groups are matched by tag; the
    # Resource still names this account's groups only.
    arns = f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/*"
    for sid, tag, groups in (("ScaleNodeGroups", NODE_GROUP_TAGS[0], node_groups),
                             ("ScaleEksNodeGroups", NODE_GROUP_TAGS[1], eks_node_groups)):
        if groups:
            statements.append({
                "Sid": sid, "Effect": "Allow", "Action": list(OPERATOR_ACTIONS), "Resource": arns,
                "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{tag}": list(groups)}}})
    if enable_ssm_probe:
        statements += [
            {"Sid": "ProbeNodesBySsm", "Effect": "Allow", "Action": ["ssm:SendCommand"],
             "Resource": [f"arn:{partition}:ssm:{region}:*:document/AWS-RunShellScript",
                          f"arn:{partition}:ec2:{region}:{account_id}:instance/*"]},
            {"Sid": "ReadProbeResults", "Effect": "Allow", "Action": ["ssm:GetCommandInvocation"], "Resource": "*"}]
    return document(statements)


def automation_trust(partition: str, account_id: str) -> dict[str, object]:
    """People and CI of the platform account (through their IAM permissions) assume the automation role."""
    return document([{"Sid": "PlatformAccount", "Effect": "Allow",
                      "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"}, "Action": "sts:AssumeRole"}])


def automation_permissions(partition: str, region: str, account_id: str, operator_role_arns: Sequence[str],
                           journal_table: str) -> dict[str, object]:
    statements: list[dict[str, object]] = [
        {"Sid": "ReadPools", "Effect": "Allow", "Resource": "*",
         "Action": ["ec2:DescribeCapacityReservations", "ram:GetResourceShares", "ram:ListResources",
                    "ram:GetResourceShareAssociations"]},
        {"Sid": "Journal", "Effect": "Allow",
         "Resource": f"arn:{partition}:dynamodb:{region}:{account_id}:table/{journal_table}",
         "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query", "dynamodb:Scan", "dynamodb:ConditionCheckItem",
                    "dynamodb:DescribeTable"]},
        _journal_key(partition, region, account_id),
        # The scheduler lends a pool's idle slots to training and reclaims them (automation/schedule/
        # lending.py): EC2's interruptible capacity reservation actions on the account's own ODCRs.
        {"Sid": "LendPoolSlots", "Effect": "Allow",
         "Resource": f"arn:{partition}:ec2:{region}:{account_id}:capacity-reservation/*",
         "Action": ["ec2:CreateInterruptibleCapacityReservationAllocation",
                    "ec2:UpdateInterruptibleCapacityReservationAllocation"]},
        # `gpufleet usage --by job` on EKS: pods' GPU requests from the central Prometheus.
        {"Sid": "QueryUsage", "Effect": "Allow", "Action": ["aps:QueryMetrics"],
         "Resource": f"arn:{partition}:aps:{region}:{account_id}:workspace/*"},
    ]
    if operator_role_arns:
        statements.append({"Sid": "AssumeOperatorRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                           "Resource": list(operator_role_arns)})
    return document(statements)


def tls_only_statement(bucket_arn: str) -> dict[str, object]:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def bucket_policy(bucket_arn: str, statements: Sequence[Mapping[str, object]] = ()) -> dict[str, object]:
    """Every bucket's policy: deny plain HTTP first, then the bucket's own statements."""
    return document([tls_only_statement(bucket_arn), *statements])


def log_bucket_statements(partition: str, bucket_arn: str, trail: str, account_id: str,
                          enable_config: bool) -> list[dict[str, object]]:
    """CloudTrail (and Config) may write; nobody may delete a log file or its versions."""
    statements: list[dict[str, object]] = [
        {"Sid": "DenyDelete", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutLifecycleConfiguration",
                    "s3:DeleteBucket"],
         "Resource": [bucket_arn, f"{bucket_arn}/*"]},
        {"Sid": "CloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": bucket_arn,
         "Condition": {"StringEquals": {"aws:SourceArn": trail}}},
        {"Sid": "CloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
         "Condition": {"StringEquals": {"aws:SourceArn": trail, "s3:x-amz-acl": "bucket-owner-full-control"}}},
    ]
    if enable_config:
        statements += [
            {"Sid": "ConfigAclCheck", "Effect": "Allow", "Principal": {"Service": "config.amazonaws.com"},
             "Action": ["s3:GetBucketAcl", "s3:ListBucket"], "Resource": bucket_arn,
             "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
            {"Sid": "ConfigWrite", "Effect": "Allow", "Principal": {"Service": "config.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": f"{bucket_arn}/AWSLogs/{account_id}/Config/*",
             "Condition": {"StringEquals": {"aws:SourceAccount": account_id,
                                            "s3:x-amz-acl": "bucket-owner-full-control"}}},
        ]
    return statements


def logs_key_policy(partition: str, region: str, account_id: str, trail: str,
                    enable_config: bool) -> dict[str, object]:
    """The logs key: this account administers it; CloudWatch Logs, CloudTrail (and Config) use it."""
    statements = [key_policies.account_root_statement(partition, account_id),
                  key_policies.logs_statement(region, partition, account_id),
                  {"Sid": "CloudTrailEncrypt", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
                   "Action": ["kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
                   "Condition": {"StringEquals": {"aws:SourceArn": trail},
                                 "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                                f"arn:{partition}:cloudtrail:*:{account_id}:trail/*"}}}]
    if enable_config:
        statements.append({"Sid": "ConfigEncrypt", "Effect": "Allow", "Principal": {"Service": "config.amazonaws.com"},
                           "Action": ["kms:GenerateDataKey*", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*",
                           "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})
    return key_policies.key_policy(statements)


def release_key_policy(partition: str, account_id: str, training: Sequence[str],
                       inference: Sequence[str]) -> dict[str, object]:
    """Release artifacts: training accounts encrypt (write), inference accounts only decrypt (read)."""
    statements = [key_policies.account_root_statement(partition, account_id)]
    if training:
        statements.append({"Sid": "TrainingPublishes", "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in training]},
                           "Action": list(KMS_ENCRYPT), "Resource": "*"})
    if inference:
        statements.append({"Sid": "InferenceReads", "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in inference]},
                           "Action": list(KMS_DECRYPT), "Resource": "*"})
    return key_policies.key_policy(statements)


def release_bucket_statements(partition: str, bucket_arn: str, training: Sequence[str],
                              inference: Sequence[str]) -> list[dict[str, object]]:
    """Training writes models; inference reads them; nothing else crosses accounts."""
    objects = f"{bucket_arn}/*"
    statements: list[dict[str, object]] = []
    if training:
        statements.append({"Sid": "TrainingPublishes", "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in training]},
                           "Action": list(RELEASE_WRITE), "Resource": [bucket_arn, objects]})
    if inference:
        statements.append({"Sid": "InferenceReadsOnly", "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in inference]},
                           "Action": list(RELEASE_READ), "Resource": [bucket_arn, objects]})
    return statements

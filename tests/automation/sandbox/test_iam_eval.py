"""The sandbox's IAM evaluator, and the rendered statements whose condition keys it must get right.

The operator role's scale statements hold only on Auto Scaling groups carrying the node-group tag:
ours (``gpufleet:node-group``, which AsgNodeGroup puts on plain and Slurm groups) or the one EKS puts
on a managed node group's group (``eks:nodegroup-name``, with ``eks:cluster-name``; EKS documents
these tags, and does not copy the node group's own tags to its group). Evaluated here against those
tags, as AWS would evaluate ``autoscaling:ResourceTag/<key>``.
"""

from __future__ import annotations

import pytest

from gpufleet.automation.sandbox.iam_eval import Request, UnsupportedCondition, evaluate
from gpufleet.infra import baseline_policies as bp

TRAINING, INFERENCE, PLATFORM = "222222222222", "333333333333", "111111111111"
ASG = f"arn:aws:autoscaling:us-east-1:{INFERENCE}:autoScalingGroup:0c1:autoScalingGroupName/eks-serve-h100-1a2b"
EKS_TAGS = {"eks:cluster-name": "gpufleet-inference", "eks:nodegroup-name": "serve-h100",
            "k8s.io/cluster-autoscaler/enabled": "true", "kubernetes.io/cluster/gpufleet-inference": "owned"}


def scale(tags: dict[str, str], action: str = "autoscaling:SetDesiredCapacity", account: str = INFERENCE) -> Request:
    return Request(action, ASG.replace(INFERENCE, account), {f"autoscaling:ResourceTag/{k}": v for k, v in tags.items()})


def test_eks_group_scaled_only_by_the_tag_eks_puts_on_its_auto_scaling_group():
    policy = bp.operator_permissions("aws", "us-east-1", INFERENCE, (), eks_node_groups=["serve-h100"])
    for action in bp.OPERATOR_ACTIONS:
        decision = evaluate([policy], scale(EKS_TAGS, action))
        assert decision.allowed and decision.allowed_by == ("ScaleEksNodeGroups",), action
    # Another node group of the same cluster, a group without EKS's tags, our tag on an EKS group: denied.
    assert not evaluate([policy], scale({**EKS_TAGS, "eks:nodegroup-name": "system"})).allowed
    assert not evaluate([policy], scale({})).allowed
    assert not evaluate([policy], scale({"gpufleet:node-group": "serve-h100"})).allowed
    # Reads need no tag; anything else is not granted.
    assert evaluate([policy], Request("autoscaling:DescribeAutoScalingGroups")).allowed
    assert not evaluate([policy], scale(EKS_TAGS, "autoscaling:DeleteAutoScalingGroup")).allowed


def test_plain_and_slurm_groups_scaled_only_by_our_tag():
    policy = bp.operator_permissions("aws", "us-east-1", TRAINING, ["train-h100", "train-h200"])
    assert evaluate([policy], scale({"gpufleet:node-group": "train-h200"}, account=TRAINING)).allowed
    assert not evaluate([policy], scale({"gpufleet:node-group": "other"}, account=TRAINING)).allowed
    assert not evaluate([policy], scale({"Name": "train-h100"}, account=TRAINING)).allowed
    assert not evaluate([policy], scale({"eks:nodegroup-name": "train-h100"}, account=TRAINING)).allowed
    # The statements name this account's groups only: the same tag on another account's group is not ours.
    assert not evaluate([policy], scale({"gpufleet:node-group": "train-h200"}, account=INFERENCE)).allowed


def test_journal_key_only_through_dynamodb_in_the_home_region():
    policy = bp.automation_permissions("aws", "us-east-1", PLATFORM, [], "journal")
    key = f"arn:aws:kms:us-east-1:{PLATFORM}:key/1234"
    assert evaluate([policy], Request("kms:Decrypt", key, {"kms:ViaService": "dynamodb.us-east-1.amazonaws.com"})).allowed
    assert not evaluate([policy], Request("kms:Decrypt", key)).allowed
    assert not evaluate([policy], Request("kms:Decrypt", key, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})).allowed


def test_trust_names_the_role_its_sessions_and_the_external_id():
    automation = f"arn:aws:iam::{PLATFORM}:role/gpufleet-automation"
    trust = bp.operator_trust(automation, "ext-1")
    session = f"arn:aws:sts::{PLATFORM}:assumed-role/gpufleet-automation/gpufleet-status"

    def assume(principal: str, external: str | None) -> bool:
        context = {"sts:ExternalId": external} if external else {}
        return evaluate([trust], Request("sts:AssumeRole", "*", context, principal), trust=True).allowed

    assert assume(session, "ext-1")
    assert not assume(session, "ext-2") and not assume(session, None)
    assert not assume(f"arn:aws:iam::{PLATFORM}:user/gpufleet-sandbox-operator", "ext-1")
    assert not assume(f"arn:aws:sts::{PLATFORM}:assumed-role/other/s", "ext-1")
    root = bp.automation_trust("aws", PLATFORM)
    assert evaluate([root], Request("sts:AssumeRole", "*", {}, f"arn:aws:iam::{PLATFORM}:user/x"), trust=True).allowed
    assert not evaluate([root], Request("sts:AssumeRole", "*", {}, f"arn:aws:iam::{TRAINING}:user/x"), trust=True).allowed


def test_explicit_deny_wins_and_wildcards_follow_aws():
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "arn:aws:dynamodb:*:*:table/j*"},
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": "*"}]}
    assert evaluate([policy], Request("DynamoDB:getitem", "arn:aws:dynamodb:us-east-1:1:table/journal")).allowed
    assert not evaluate([policy], Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/Journal")).allowed
    denied = evaluate([policy], Request("dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:1:table/journal"))
    assert not denied.allowed and denied.denied_by == ("NoDelete",)


def test_an_unknown_condition_operator_is_refused_not_guessed():
    policy = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                             "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01"}}}]}
    with pytest.raises(UnsupportedCondition, match="DateLessThan"):
        evaluate([policy], Request("ec2:DescribeInstances"))


def test_usage_queries_only_the_platforms_workspaces():
    """``gpufleet usage --by job`` on EKS queries the central Prometheus (SigV4, aps:QueryMetrics):
    the automation role may query the platform's workspaces and nothing else."""
    policy = bp.automation_permissions("aws", "us-east-1", PLATFORM, [], "journal")
    workspace = f"arn:aws:aps:us-east-1:{PLATFORM}:workspace/ws-0123"
    assert evaluate([policy], Request("aps:QueryMetrics", workspace)).allowed_by == ("QueryUsage",)
    assert not evaluate([policy], Request("aps:QueryMetrics", workspace.replace(PLATFORM, TRAINING))).allowed
    assert not evaluate([policy], Request("aps:RemoteWrite", workspace)).allowed

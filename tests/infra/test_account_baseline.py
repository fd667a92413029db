"""AccountBaseline under mocks: keys per data class with rotation, a trail to an immutable log bucket,
encryption by default, no public S3, the operator role (consumers) and the automation role plus
release bucket (platform)."""

from __future__ import annotations

import json

import pytest

from gpufleet.infra import baseline_policies
from gpufleet.infra.account_baseline import AccountBaseline, AccountBaselineArgs
from gpufleet.infra.model import Role

PLATFORM, TRAINING, INFERENCE = "111111111111", "222222222222", "333333333333"
AUTOMATION = f"arn:aws:iam::{PLATFORM}:role/gpufleet-automation"


def consumer(**overrides) -> AccountBaseline:
    args = dict(stack="training", role=Role.TRAINING, account_id=TRAINING, region="us-east-1",
                automation_role_arn=AUTOMATION, node_group_names=("train-h100", "train-h200"))
    args.update(overrides)
    return AccountBaseline("baseline", AccountBaselineArgs(**args))


def platform(**overrides) -> AccountBaseline:
    args = dict(stack="platform", role=Role.PLATFORM, account_id=PLATFORM, region="us-east-1",
                consumer_accounts={Role.TRAINING: TRAINING, Role.INFERENCE: INFERENCE})
    args.update(overrides)
    return AccountBaseline("baseline", AccountBaselineArgs(**args))


def inputs_of(mock_runtime, type_token: str, name_part: str = "") -> list[dict]:
    return [r["inputs"] for r in mock_runtime.registered(type_token) if name_part in r["name"]]


def test_operator_role_trusts_only_the_platform_automation_role_with_an_external_id(mock_runtime):
    baseline = consumer()
    external_id = mock_runtime.settle(baseline.external_id)
    assert mock_runtime.settle(baseline.operator_role_arn) == f"arn:aws:iam::{TRAINING}:role/gpufleet-operator"
    [role] = inputs_of(mock_runtime, "aws:iam/role:Role", "operator")
    [statement] = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"AWS": AUTOMATION}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert external_id == baseline_policies.external_id(PLATFORM, TRAINING, "training")


def test_operator_role_scales_only_its_node_groups_and_reads_status(mock_runtime):
    mock_runtime.settle(consumer().operator_role_arn)
    [policy] = inputs_of(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "operator")
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    # Plain/Slurm Auto Scaling groups carry our tag; no EKS statement, no SSM unless asked for.
    assert set(statements) == {"ReadFleetState", "ScaleNodeGroups"}
    assert statements["ScaleNodeGroups"]["Condition"] == {
        "StringEquals": {"autoscaling:ResourceTag/gpufleet:node-group": ["train-h100", "train-h200"]}}
    # Reads only: the Describe calls, and the groups' metrics for `status --chart`.
    assert all(a.split(":")[1].startswith(("Describe", "List")) or a == "cloudwatch:GetMetricData"
               for a in statements["ReadFleetState"]["Action"])
    assert "cloudwatch:GetMetricData" in statements["ReadFleetState"]["Action"]


def test_operator_role_of_eks_groups_matches_the_tag_eks_puts_and_may_probe_by_ssm(mock_runtime):
    mock_runtime.settle(consumer(eks_node_groups=True, enable_ssm_probe=True).operator_role_arn)
    [policy] = inputs_of(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "operator")
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    assert set(statements) == {"ReadFleetState", "ScaleEksNodeGroups", "ProbeNodesBySsm", "ReadProbeResults"}
    assert statements["ScaleEksNodeGroups"]["Condition"] == {
        "StringEquals": {"autoscaling:ResourceTag/eks:nodegroup-name": ["train-h100", "train-h200"]}}
    assert statements["ProbeNodesBySsm"]["Resource"] == [
        "arn:aws:ssm:us-east-1:*:document/AWS-RunShellScript", f"arn:aws:ec2:us-east-1:{TRAINING}:instance/*"]


def test_trail_is_multi_region_validated_encrypted_into_an_object_locked_bucket(mock_runtime):
    baseline = consumer(log_retention_days=400)
    mock_runtime.settle(baseline.keys["logs"])
    [trail] = inputs_of(mock_runtime, "aws:cloudtrail/trail:Trail")
    assert trail["isMultiRegionTrail"] and trail["enableLogFileValidation"] and trail["includeGlobalServiceEvents"]
    assert trail["kmsKeyId"] == mock_runtime.settle(baseline.keys["logs"])
    [bucket] = inputs_of(mock_runtime, "aws:s3/bucket:Bucket", "logs")
    assert bucket["objectLockEnabled"] is True
    [lock] = inputs_of(mock_runtime, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 400}
    [policy] = inputs_of(mock_runtime, "aws:s3/bucketPolicy:BucketPolicy", "logs")
    sids = {s["Sid"] for s in json.loads(policy["policy"])["Statement"]}
    assert {"DenyInsecureTransport", "DenyDelete", "CloudTrailAclCheck", "CloudTrailWrite"} <= sids


def test_keys_per_data_class_rotate_and_ebs_defaults_to_the_data_key(mock_runtime):
    baseline = consumer()
    arns = {cls: mock_runtime.settle(arn) for cls, arn in baseline.keys.items()}
    assert len(set(arns.values())) == 3
    keys = inputs_of(mock_runtime, "aws:kms/key:Key")
    # The three data classes, and the key of the security alarm topic (TrailMonitoring).
    assert len(keys) == 4 and all(k["enableKeyRotation"] is True for k in keys)
    for key in keys:
        statements = json.loads(key["policy"])["Statement"]
        accounts = {s["Principal"]["AWS"].split(":")[4] for s in statements if s["Principal"].get("AWS", "*") != "*"}
        assert accounts == {TRAINING}, statements
        # Principal * only for this account's callers (a service-linked role matched by condition).
        for s in statements:
            if s["Principal"].get("AWS") == "*":
                assert s["Condition"]["StringEquals"]["kms:CallerAccount"] == TRAINING, s
    [default_key] = inputs_of(mock_runtime, "aws:ebs/defaultKmsKey:DefaultKmsKey")
    assert default_key["keyArn"] == arns["data"]
    [by_default] = inputs_of(mock_runtime, "aws:ebs/encryptionByDefault:EncryptionByDefault")
    assert by_default["enabled"] is True
    [block] = inputs_of(mock_runtime, "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock")
    assert block["accountId"] == TRAINING and all(
        block[f] for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))


@pytest.mark.parametrize("enabled", [False, True])
def test_config_recorder_only_behind_its_flag(mock_runtime, enabled):
    mock_runtime.settle(consumer(enable_config_recorder=enabled).keys["logs"])
    recorders = inputs_of(mock_runtime, "aws:cfg/recorder:Recorder")
    channels = inputs_of(mock_runtime, "aws:cfg/deliveryChannel:DeliveryChannel")
    assert (len(recorders), len(channels)) == ((1, 1) if enabled else (0, 0))
    if enabled:
        assert recorders[0]["recordingGroup"] == {"allSupported": True, "includeGlobalResourceTypes": True}


def test_platform_release_bucket_training_writes_inference_reads(mock_runtime):
    baseline = platform()
    # The mock runtime answers in its own account; the name is what consumers' operator roles trust.
    assert mock_runtime.settle(baseline.automation_role_arn).endswith(":role/gpufleet-automation")
    mock_runtime.settle(baseline.release_bucket)
    [policy] = inputs_of(mock_runtime, "aws:s3/bucketPolicy:BucketPolicy", "releases")
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    assert statements["TrainingPublishes"]["Principal"] == {"AWS": [f"arn:aws:iam::{TRAINING}:root"]}
    assert "s3:PutObject" in statements["TrainingPublishes"]["Action"]
    assert statements["InferenceReadsOnly"]["Principal"] == {"AWS": [f"arn:aws:iam::{INFERENCE}:root"]}
    assert all(a.startswith(("s3:Get", "s3:List")) for a in statements["InferenceReadsOnly"]["Action"])
    [automation] = inputs_of(mock_runtime, "aws:iam/rolePolicy:RolePolicy", "automation")
    assume = next(s for s in json.loads(automation["policy"])["Statement"] if s["Sid"] == "AssumeOperatorRoles")
    assert assume["Resource"] == [f"arn:aws:iam::{a}:role/gpufleet-operator" for a in (TRAINING, INFERENCE)]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"automation_role_arn": None}, "automation_role_arn"),
    ({"account_id": "12345"}, "account_id"),
    ({"consumer_accounts": {Role.INFERENCE: INFERENCE}}, "consumer_accounts"),
    ({"log_retention_days": 0}, "log_retention_days"),
])
def test_bad_consumer_args_name_the_field(overrides, field):
    args = dict(stack="training", role=Role.TRAINING, account_id=TRAINING, region="us-east-1",
                automation_role_arn=AUTOMATION)
    args.update(overrides)
    with pytest.raises(ValueError, match=field):
        AccountBaselineArgs(**args)


def test_platform_args_refuse_consumer_fields():
    with pytest.raises(ValueError, match="automation_role_arn"):
        AccountBaselineArgs(stack="platform", role=Role.PLATFORM, account_id=PLATFORM, region="us-east-1",
                            automation_role_arn=AUTOMATION)
    with pytest.raises(ValueError, match="consumer_accounts"):
        AccountBaselineArgs(stack="platform", role=Role.PLATFORM, account_id=PLATFORM, region="us-east-1",
                            consumer_accounts={Role.TRAINING: PLATFORM})

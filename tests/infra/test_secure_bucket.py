"""SecureBucket under mocks: what every bucket of the fleet gets, what callers add, what it refuses,
and that it passes the bucket guardrails on its own."""

from __future__ import annotations

import json

import pulumi
import pytest
from pulumi_aws import kms

from gpufleet.infra.guardrails.engine import evaluate
from gpufleet.infra.guardrails.model import FleetContext
from gpufleet.infra.rendered import RenderedResource
from gpufleet.infra.secure_bucket import (
    AccessLogTarget,
    BucketOrigin,
    SecureBucket,
    SecureBucketArgs,
)
from tests.infra.conftest import ACCOUNT, REGION

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b6a0b6a-0000-4000-8000-000000000001"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"


def only(mock_runtime, type_token: str) -> dict:
    [registration] = mock_runtime.registered(type_token)
    return registration


def test_a_bucket_is_kms_encrypted_versioned_private_owner_enforced_and_tls_only(mock_runtime):
    bucket = SecureBucket("data", SecureBucketArgs(kms_key_arn=KEY))
    arn = mock_runtime.settle(bucket.arn)
    component = only(mock_runtime, "gpufleet:storage:SecureBucket")
    rule = only(mock_runtime, SSE)["inputs"]["rules"][0]
    assert rule == {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY},
                    "bucketKeyEnabled": True}
    versioning = only(mock_runtime, "aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    block = only(mock_runtime, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
    assert [block[f] for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")] \
        == [True] * 4
    ownership = only(mock_runtime, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")["inputs"]
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    [statement] = json.loads(only(mock_runtime, "aws:s3/bucketPolicy:BucketPolicy")["inputs"]["policy"])["Statement"]
    assert statement == {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                         "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    children = [r for r in mock_runtime.monitor.registrations if r["parent"] == component["urn"]]
    assert sorted(r["name"] for r in children) == ["data-bucket", "data-ownership", "data-policy", "data-public-access",
                                                   "data-sse", "data-versioning"]
    assert mock_runtime.registered("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration") == []
    assert mock_runtime.registered("aws:s3/bucketLogging:BucketLogging") == []
    assert only(mock_runtime, "aws:s3/bucket:Bucket")["inputs"]["forceDestroy"] is False


def test_caller_statements_follow_the_tls_deny_and_see_the_bucket_arn(mock_runtime):
    def reads(arn: str) -> list[dict]:
        return [{"Sid": "PartnerReads", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444444444444:root"},
                 "Action": "s3:GetObject", "Resource": f"{arn}/*"}]

    bucket = SecureBucket("shared", SecureBucketArgs(kms_key_arn=KEY, bucket_name="gpufleet-shared-bucket",
                                                     policy_statements=reads))
    arn = mock_runtime.settle(bucket.arn)
    assert arn == "arn:aws:s3:::gpufleet-shared-bucket"
    doc = json.loads(only(mock_runtime, "aws:s3/bucketPolicy:BucketPolicy")["inputs"]["policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["DenyInsecureTransport", "PartnerReads"]
    assert doc["Statement"][1]["Resource"] == f"{arn}/*"


def test_object_lock_is_set_at_creation_with_a_governance_default(mock_runtime):
    mock_runtime.settle(SecureBucket("trail", SecureBucketArgs(kms_key_arn=KEY, object_lock_retention_days=90)).arn)
    assert only(mock_runtime, "aws:s3/bucket:Bucket")["inputs"]["objectLockEnabled"] is True
    lock = only(mock_runtime, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")["inputs"]
    assert lock["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 90}}


def test_access_logs_go_to_the_target_partitioned_by_event_time(mock_runtime):
    bucket = SecureBucket("data", SecureBucketArgs(
        kms_key_arn=KEY, access_log=AccessLogTarget(bucket="acct-access-logs", prefix="s3-access/data/")))
    mock_runtime.settle(bucket.arn)
    logging = only(mock_runtime, "aws:s3/bucketLogging:BucketLogging")["inputs"]
    assert (logging["targetBucket"], logging["targetPrefix"]) == ("acct-access-logs", "s3-access/data/")
    assert logging["targetObjectKeyFormat"] == {"partitionedPrefix": {"partitionDateSource": "EventTime"}}


def test_a_bucket_never_logs_to_itself():
    with pytest.raises(ValueError, match="never logs to itself"):
        SecureBucketArgs(kms_key_arn=KEY, bucket_name="logs-here",
                         access_log=AccessLogTarget(bucket="logs-here", prefix="self/"))


@pytest.mark.parametrize(("args", "field"), [
    ({"bucket_name": "Has-Caps"}, "bucket_name"),
    ({"bucket_name": "ab"}, "bucket_name"),
    ({"object_lock_retention_days": 0}, "object_lock_retention_days"),
])
def test_bad_args_name_the_field(args, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        SecureBucketArgs(kms_key_arn=KEY, **args)
    with pytest.raises(ValueError, match="^access_log.prefix: "):
        AccessLogTarget(bucket="b", prefix="/abs")


def test_a_moved_bucket_aliases_each_resource_to_its_old_name_and_parent(mock_runtime):
    class Owner(pulumi.ComponentResource):
        def __init__(self) -> None:
            super().__init__("test:owner:Owner", "owner")
            SecureBucket("owner-data", SecureBucketArgs(
                kms_key_arn=KEY, moved_from=BucketOrigin(parent=self, policy_name="owner-data-tls-only")),
                opts=pulumi.ResourceOptions(parent=self))

    Owner()
    mock_runtime.settle(pulumi.Output.from_input(None))
    [owner] = mock_runtime.registered("test:owner:Owner")
    earlier = {r["name"]: {(a.name, a.parent_urn) for a in r["aliases"] if a.parent_urn}
               for r in mock_runtime.monitor.registrations if r["type"].startswith("aws:s3/")}
    assert earlier == {
        "owner-data-bucket": {("owner-data", owner["urn"])},
        "owner-data-sse": {("owner-data-sse", owner["urn"])},
        "owner-data-versioning": {("owner-data-versioning", owner["urn"])},
        "owner-data-public-access": {("owner-data-public-access", owner["urn"])},
        "owner-data-policy": {("owner-data-tls-only", owner["urn"])},
        "owner-data-ownership": set(),  # new: nothing to find
    }


def test_a_secure_bucket_passes_the_bucket_guardrails_on_its_own(mock_runtime):
    key = kms.Key("bucket-key", enable_key_rotation=True)
    mock_runtime.settle(SecureBucket("data", SecureBucketArgs(kms_key_arn=key.arn)).arn)
    resources = [RenderedResource(stack="test", role="training", account_id=ACCOUNT, region=REGION, type=r["type"],
                                  name=r["name"], urn=r["urn"], inputs=r["inputs"],
                                  outputs={**r["outputs"], "id": r["id"]}, parent=r["parent"])
                 for r in mock_runtime.monitor.registrations]
    findings = [f for f in evaluate(resources, FleetContext(stacks=())) if f.rule.startswith("s3.")
                and f.rule != "s3.account-public-access-block"]  # account-wide: AccountBaseline's
    assert findings == [], [f.message for f in findings]
    assert {r.type for r in resources} >= {"aws:s3/bucketPolicy:BucketPolicy", SSE}

"""Rules on hand-built resources: each decides on the property it names, and a property it cannot
read is a finding, never a pass."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpufleet.infra import baseline_policies as bp
from gpufleet.infra.guardrails import FleetContext, evaluate
from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails.engine import RULES, check_resource
from gpufleet.infra.guardrails.model import Scope, StackFacts
from gpufleet.infra.model import Role
from gpufleet.infra.rendered import RenderedResource

PLATFORM, TRAINING, INFERENCE, OUTSIDER = "111111111111", "222222222222", "333333333333", "444444444444"
STACKS = {"platform": (Role.PLATFORM, PLATFORM), "training": (Role.TRAINING, TRAINING),
          "inference": (Role.INFERENCE, INFERENCE)}
CTX = FleetContext(stacks=tuple(StackFacts(name=n, role=r, account_id=a, holds_phi=r is Role.INFERENCE)
                                for n, (r, a) in STACKS.items()))
CMK = f"arn:aws:kms:us-east-1:{TRAINING}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def res(stack: str, type_token: str, logical: str, **inputs: Any) -> RenderedResource:
    role, account = STACKS[stack]
    return RenderedResource(stack=stack, role=role.value, account_id=account, region="us-east-1", type=type_token,
                            name=logical, urn=f"urn:pulumi:{stack}::gpufleet::{type_token}::{logical}", inputs=inputs,
                            outputs=dict(inputs))


def rule(rule_id: str, scope: Scope = Scope.RESOURCE):
    return next(r for r in RULES if r.id == rule_id and r.scope is scope)


def messages(rule_id: str, resource: RenderedResource) -> list[str]:
    return [f.message for f in check_resource(rule(rule_id), resource, CTX)]


def test_every_rule_has_an_id_severity_summary_and_a_way_to_check():
    for r in RULES:
        assert r.id.count(".") == 1 and r.summary, r
        assert (r.check_resource is not None) == (r.scope is Scope.RESOURCE), r.id
        assert (r.check_stack is not None) == (r.scope is not Scope.RESOURCE), r.id
        assert r.scope is not Scope.RESOURCE or r.types, r.id


@pytest.mark.parametrize(("type_token", "prop", "rule_id"), [
    ("aws:fsx/lustreFileSystem:LustreFileSystem", "kmsKeyId", "fsx.cmk"),
    ("aws:cloudwatch/logGroup:LogGroup", "kmsKeyId", "logs.cmk"),
    ("aws:sns/topic:Topic", "kmsMasterKeyId", "sns.cmk"),
    ("aws:secretsmanager/secret:Secret", "kmsKeyId", "secretsmanager.cmk"),
    ("eks:index:Cluster", "encryptionConfigKeyArn", "eks.secrets-cmk"),
    ("aws:ebs/defaultKmsKey:DefaultKmsKey", "keyArn", "ebs.default-encryption"),
])
def test_customer_key_required_not_aws_managed(type_token, prop, rule_id):
    assert messages(rule_id, res("training", type_token, "x", **{prop: CMK})) == []
    [missing] = messages(rule_id, res("training", type_token, "x"))
    assert "AWS managed key" in missing and prop in missing and "x" in missing
    [managed] = messages(rule_id, res("training", type_token, "x", **{prop: "alias/aws/fsx"}))
    assert "alias/aws/fsx" in managed


def test_bucket_encryption_must_be_kms_with_a_cmk():
    sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"

    def config(**default: str) -> RenderedResource:
        return res("training", sse, "b-sse", bucket="b", rules=[{"applyServerSideEncryptionByDefault": default}])

    assert messages("s3.bucket-sse-kms", config(sseAlgorithm="aws:kms", kmsMasterKeyId=CMK)) == []
    assert "AES256" in messages("s3.bucket-sse-kms", config(sseAlgorithm="AES256"))[0]
    [unreadable] = messages("s3.bucket-sse-kms", config(kmsMasterKeyId=CMK))
    assert "cannot check" in unreadable and "sseAlgorithm is missing" in unreadable


def test_public_access_block_needs_all_four_and_a_missing_one_is_a_finding():
    pab = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    flags = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}
    assert messages("s3.public-access-block", res("training", pab, "p", bucket="b", **flags)) == []
    [off] = messages("s3.public-access-block", res("training", pab, "p", bucket="b", **{**flags, "ignorePublicAcls": False}))
    assert "ignorePublicAcls" in off
    partial = dict(flags)
    del partial["blockPublicAcls"]
    [missing] = messages("s3.public-access-block", res("training", pab, "p", bucket="b", **partial))
    assert "blockPublicAcls is missing" in missing


def test_string_booleans_are_read_as_pulumi_passes_them():
    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    ok = res("training", lt, "lt", metadataOptions={"httpTokens": "required"},
             networkInterfaces=[{"associatePublicIpAddress": "false", "networkCardIndex": 0}],
             blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}])
    for rule_id in ("ec2.imdsv2", "ec2.no-public-ip", "ebs.volume-encryption"):
        assert messages(rule_id, ok) == [], rule_id
    odd = res("training", lt, "lt", networkInterfaces=[{"associatePublicIpAddress": "maybe"}])
    assert "not a boolean" in messages("ec2.no-public-ip", odd)[0]
    assert "IMDSv1" in messages("ec2.imdsv2", res("training", lt, "lt"))[0]


def test_world_ingress_in_every_form():
    sg = res("training", "aws:ec2/securityGroup:SecurityGroup", "sg",
             ingress=[{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]},
                      {"protocol": "tcp", "fromPort": 443, "toPort": 443, "ipv6CidrBlocks": ["::/0"]}])
    [message] = messages("ec2.no-world-ingress", sg)
    assert "443-443/tcp" in message and "::/0" in message
    egress_rule = res("training", "aws:ec2/securityGroupRule:SecurityGroupRule", "r", type="egress",
                      cidrBlocks=["0.0.0.0/0"])
    assert messages("ec2.no-world-ingress", egress_rule) == []


def test_eks_endpoint_private_only_matters_in_phi_accounts():
    cluster = "aws:eks/cluster:Cluster"
    assert messages("eks.private-endpoint", res("training", cluster, "c", vpcConfig={})) == []
    [defaulted] = messages("eks.private-endpoint", res("inference", cluster, "c", vpcConfig={}))
    assert "defaults to true" in defaulted
    private = res("inference", cluster, "c", vpcConfig={"endpointPublicAccess": False, "endpointPrivateAccess": True})
    assert messages("eks.private-endpoint", private) == []


def test_notprincipal_and_notaction_count_as_wide_grants():
    [st] = docs.parse({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "NotAction": "iam:*",
                                     "Resource": "*"}}, "p")
    assert st.aws_principals == ("*",)
    assert docs.actions_within(st, ("s3:GetObject",)) == ["NotAction iam:*"]


def test_action_globs_are_within_only_a_wider_glob():
    [st] = docs.parse({"Statement": [{"Effect": "Allow", "Action": ["ec2:Describe*", "autoscaling:*",
                                                                    "eks:ListNodegroups"], "Resource": "*"}]}, "p")
    assert docs.actions_within(st, ("ec2:Describe*", "eks:List*")) == ["autoscaling:*"]


def release_policy() -> dict:
    """The release bucket's policy as its SecureBucket writes it."""
    arn = "arn:aws:s3:::rel"
    return bp.bucket_policy(arn, bp.release_bucket_statements("aws", arn, [TRAINING], [INFERENCE]))


def test_baseline_documents_pass_the_rules_they_are_written_for():
    trust = res("inference", "aws:iam/role:Role", "operator", name="gpufleet-operator",
                assumeRolePolicy=json.dumps(bp.operator_trust(f"arn:aws:iam::{PLATFORM}:role/gpufleet-automation",
                                                              bp.external_id(PLATFORM, INFERENCE, "inference"))))
    policy = res("inference", "aws:iam/rolePolicy:RolePolicy", "operator-policy", role="gpufleet-operator",
                 policy=json.dumps(bp.operator_permissions("aws", "us-east-1", INFERENCE, ["serve"])))
    key = res("platform", "aws:kms/key:Key", "release-key", enableKeyRotation=True,
              policy=json.dumps(bp.release_key_policy("aws", PLATFORM, [TRAINING], [INFERENCE])))
    bucket_policy = res("platform", "aws:s3/bucketPolicy:BucketPolicy", "release-policy", bucket="rel",
                        policy=json.dumps(release_policy()))
    findings = [f for f in evaluate([trust, policy, key, bucket_policy], CTX)
                if f.rule.startswith(("iam.", "kms.", "fleet.", "s3.tls", "s3.no-public"))]
    assert findings == [], [f.message for f in findings]


def test_release_bucket_inference_gets_read_only():
    doc = release_policy()
    doc["Statement"][2]["Action"].append("s3:DeleteObject")
    policy = res("platform", "aws:s3/bucketPolicy:BucketPolicy", "release-policy", bucket="rel", policy=json.dumps(doc))
    [finding] = [f for f in evaluate([policy], CTX) if f.rule == "fleet.release-flow"]
    assert "s3:DeleteObject" in finding.message and "inference" in finding.message


def test_operator_trust_without_platform_in_the_plan_is_an_advisory_finding():
    consumers_only = FleetContext(stacks=tuple(s for s in CTX.stacks if s.role is not Role.PLATFORM))
    trust = res("training", "aws:iam/role:Role", "operator",
                assumeRolePolicy=json.dumps(bp.operator_trust("arn:aws:iam::000000000000:role/a", "x")))
    findings = evaluate([trust], consumers_only)
    assert [(f.rule, f.severity) for f in findings if f.rule.startswith(("iam.", "fleet."))] == [
        ("fleet.platform-in-plan", "warning")]


def test_fleet_context_trusts_consumer_stack_files_over_the_platform_file():
    from gpufleet.infra.model import ClusterKind, NetworkSpec, StackSpec

    def spec(name: str, role: Role, account: str, **extra: Any) -> StackSpec:
        return StackSpec(name=name, source=f"Pulumi.{name}.yaml", role=role, account_id=account, region="us-east-1",
                         deploy_role_arn=f"arn:aws:iam::{account}:role/d", az_ids=("use1-az4",),
                         network=NetworkSpec(cidr="10.0.0.0/16"), cluster_kind=ClusterKind.NONE, **extra)

    platform = spec("platform", Role.PLATFORM, PLATFORM,
                    consumer_accounts={Role.TRAINING: OUTSIDER, Role.INFERENCE: INFERENCE})
    ctx = FleetContext.from_specs([platform, spec("training", Role.TRAINING, TRAINING)])
    assert ctx.training_accounts == {TRAINING}
    assert ctx.inference_accounts == {INFERENCE} and ctx.phi_accounts == {INFERENCE}

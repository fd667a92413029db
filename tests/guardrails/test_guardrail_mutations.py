"""The mutation suite: seeded misconfigurations, each must be caught by the rule meant for it, and
the unmodified reference stacks must produce no finding at all. The score prints at the end."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from guardrail_fleet import RESULTS, Fleet, Mutation
from network_mutations import NETWORK_MUTATIONS

from gpufleet.infra.model import Role

TRAINING = "222222222222"
INFERENCE = "333333333333"
PLATFORM = "111111111111"
OUTSIDER = "444444444444"

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
SG = "aws:ec2/securityGroup:SecurityGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KEY = "aws:kms/key:Key"
TRAIL = "aws:cloudtrail/trail:Trail"
EKS = "eks:index:Cluster"


def policy_edit(prop: str, change):
    """An input change that rewrites the JSON policy document in ``prop``."""
    def edit(inputs: dict[str, Any]) -> None:
        document = json.loads(inputs[prop])
        change(document)
        inputs[prop] = json.dumps(document)
    return edit


def add_statement(statement: dict[str, Any], prop: str = "policy"):
    return policy_edit(prop, lambda d: d["Statement"].append(statement))


def setter(path: str, value: Any):
    """Set ``a.b.0.c`` in the inputs (numbers index lists); value None deletes the key."""
    def edit(inputs: dict[str, Any]) -> None:
        parts = path.split(".")
        obj: Any = inputs
        for part in parts[:-1]:
            obj = obj[int(part)] if part.isdigit() else obj[part]
        last = parts[-1]
        if value is None:
            obj.pop(last, None)
        else:
            obj[int(last) if last.isdigit() else last] = value
    return edit


def swap_consumers(fleet: Fleet):
    return dataclasses.replace(fleet.spec("platform"), consumer_accounts={Role.TRAINING: INFERENCE,
                                                                         Role.INFERENCE: TRAINING})


def outsider_consumer(fleet: Fleet):
    return dataclasses.replace(fleet.spec("platform"), consumer_accounts={Role.TRAINING: OUTSIDER,
                                                                         Role.INFERENCE: INFERENCE})


def with_spec(spec_of):
    def specs(fleet: Fleet):
        mutated = spec_of(fleet)
        return [mutated if s.name == mutated.name else s for s in fleet.specs]
    return specs


def strip_external_id(document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        statement.pop("Condition", None)


def scale_anything(document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        if statement["Sid"].startswith("ScaleNodeGroups"):
            statement.pop("Condition")


def remove_sid(sid: str):
    def change(document: dict[str, Any]) -> None:
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]
    return change


def training_bucket_name(fleet: Fleet) -> str:
    return fleet.find("training", BUCKET, "storage-datasets").outputs["bucket"]


PROGRAM = "program-input"
GRAPH = "rendered-graph"

MUTATIONS = [
    # -- program input: stack files and StackReference outputs, rendered again ----------------
    Mutation("platform-file-swaps-consumer-accounts", "fleet.release-flow", PROGRAM,
             lambda f: f.rerender(swap_consumers(f)), specs=with_spec(swap_consumers)),
    Mutation("platform-file-shares-pool-with-outsider", "ram.principals-in-fleet", PROGRAM,
             lambda f: f.rerender(outsider_consumer(f)), specs=with_spec(outsider_consumer)),
    Mutation("operator-role-trusts-star", "iam.role-trust", PROGRAM,
             lambda f: f.rerender(f.spec("inference"), {"automationRoleArn": "*"})),
    Mutation("operator-role-trusts-training-account", "fleet.no-training-in-phi", PROGRAM,
             lambda f: f.rerender(f.spec("inference"),
                                  {"automationRoleArn": f"arn:aws:iam::{TRAINING}:role/gpufleet-automation"})),
    Mutation("operator-role-trusts-platform-root", "iam.role-trust", PROGRAM,
             lambda f: f.rerender(f.spec("training"), {"automationRoleArn": f"arn:aws:iam::{PLATFORM}:root"})),
    Mutation("metrics-remote-write-role-of-an-outsider", "iam.assume-only-platform", PROGRAM,
             lambda f: f.rerender(f.spec("training"), {"monitoring": {
                 **f.stacks["platform"].exports["monitoring"],
                 "remoteWriteRoleArn": f"arn:aws:iam::{OUTSIDER}:role/metrics-remote-write"}})),
    # -- rendered graph: what a hand-edited program would register ----------------------------
    Mutation("public-bucket-policy-allowed", "s3.public-access-block", GRAPH,
             lambda f: f.edit("training", PAB, setter("blockPublicPolicy", False), "storage-datasets")),
    Mutation("public-access-block-property-missing", "s3.public-access-block", GRAPH,
             lambda f: f.edit("platform", PAB, setter("restrictPublicBuckets", None), "releases")),
    Mutation("bucket-without-public-access-block", "s3.public-access-block", GRAPH,
             lambda f: f.drop("platform", PAB, "releases")),
    Mutation("public-read-acl", "s3.no-public-grants", GRAPH,
             lambda f: f.edit("training", BUCKET, setter("acl", "public-read"), "storage-datasets")),
    Mutation("bucket-policy-allows-everyone", "s3.no-public-grants", GRAPH,
             lambda f: f.edit("platform", BUCKET_POLICY, add_statement(
                 {"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                  "Resource": "arn:aws:s3:::x/*"}), "releases")),
    Mutation("bucket-sse-aes256", "s3.bucket-sse-kms", GRAPH,
             lambda f: f.edit("training", SSE, setter("rules.0.applyServerSideEncryptionByDefault",
                                                      {"sseAlgorithm": "AES256"}), "storage-datasets")),
    Mutation("bucket-sse-aws-managed-key", "s3.bucket-sse-kms", GRAPH,
             lambda f: f.edit("platform", SSE, setter("rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId",
                                                      "alias/aws/s3"), "releases")),
    Mutation("bucket-without-encryption-config", "s3.bucket-sse-kms", GRAPH,
             lambda f: f.drop("inference", SSE, "baseline-logs")),
    Mutation("bucket-policy-without-tls-deny", "s3.tls-only", GRAPH,
             lambda f: f.edit("training", BUCKET_POLICY, policy_edit("policy", remove_sid("DenyInsecureTransport")),
                              "storage-datasets")),
    Mutation("bucket-policy-not-json", "s3.tls-only", GRAPH,
             lambda f: f.edit("platform", BUCKET_POLICY, setter("policy", "{not json"), "releases")),
    Mutation("account-public-access-block-off", "s3.account-public-access-block", GRAPH,
             lambda f: f.edit("inference", "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
                              setter("restrictPublicBuckets", False))),
    Mutation("unencrypted-fsx", "fsx.cmk", GRAPH,
             lambda f: f.edit("training", "aws:fsx/lustreFileSystem:LustreFileSystem", setter("kmsKeyId", None))),
    Mutation("ssh-open-to-the-world", "ec2.no-world-ingress", GRAPH,
             lambda f: f.edit("training", SG, lambda i: i["ingress"].append(
                 {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}), "train-h100-sg")),
    Mutation("ipv6-world-ingress-rule", "ec2.no-world-ingress", GRAPH,
             lambda f: f.add("inference", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "https-any",
                             {"securityGroupId": "sg-1", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
                              "cidrIpv6": "::/0"})),
    Mutation("public-ip-on-launch-template", "ec2.no-public-ip", GRAPH,
             lambda f: f.edit("training", LT, setter("networkInterfaces.0.associatePublicIpAddress", "true"),
                              "train-h100")),
    Mutation("imdsv1-allowed", "ec2.imdsv2", GRAPH,
             lambda f: f.edit("inference", LT, setter("metadataOptions.httpTokens", "optional"), "serve-h100")),
    Mutation("launch-template-volume-unencrypted", "ebs.volume-encryption", GRAPH,
             lambda f: f.edit("training", LT, setter("blockDeviceMappings.0.ebs.encrypted", "false"), "train-h200")),
    Mutation("public-eks-endpoint-in-production", "eks.private-endpoint", GRAPH,
             lambda f: f.edit("inference", EKS, setter("endpointPublicAccess", True))),
    Mutation("eks-secrets-without-cmk", "eks.secrets-cmk", GRAPH,
             lambda f: f.edit("inference", EKS, setter("encryptionConfigKeyArn", None))),
    Mutation("training-account-in-production-bucket-policy", "fleet.no-training-in-phi", GRAPH,
             lambda f: f.edit("inference", BUCKET_POLICY, add_statement(
                 {"Sid": "TrainingReads", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{TRAINING}:root"},
                  "Action": "s3:GetObject", "Resource": "arn:aws:s3:::logs/*"}), "baseline-logs")),
    Mutation("training-role-in-production-key-policy", "fleet.no-training-in-phi", GRAPH,
             lambda f: f.edit("inference", KEY, add_statement(
                 {"Sid": "Trainer", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{TRAINING}:role/trainer"},
                  "Action": "kms:Decrypt", "Resource": "*"}), "baseline-data")),
    Mutation("training-access-entry-on-production-eks", "fleet.no-training-in-phi", GRAPH,
             lambda f: f.add("inference", "aws:eks/accessEntry:AccessEntry", "trainer-access",
                             {"clusterName": "eks", "principalArn": f"arn:aws:iam::{TRAINING}:role/trainer"})),
    Mutation("missing-cloudtrail", "cloudtrail.present", GRAPH, lambda f: f.drop("training", TRAIL)),
    Mutation("single-region-trail", "cloudtrail.trail-config", GRAPH,
             lambda f: f.edit("inference", TRAIL, setter("isMultiRegionTrail", False))),
    Mutation("trail-without-log-validation", "cloudtrail.trail-config", GRAPH,
             lambda f: f.edit("platform", TRAIL, setter("enableLogFileValidation", None))),
    Mutation("trail-logs-deletable", "cloudtrail.log-bucket-immutable", GRAPH,
             lambda f: [r for r in f.edit("training", BUCKET_POLICY, policy_edit("policy", remove_sid("DenyDelete")),
                                          "baseline-logs")
                        if not (r.stack == "training" and r.name == "baseline-logs-object-lock")]),
    Mutation("ram-share-of-a-subnet", "ram.capacity-reservations-only", GRAPH,
             lambda f: f.edit("platform", "aws:ram/resourceAssociation:ResourceAssociation",
                              setter("resourceArn", f"arn:aws:ec2:us-east-1:{PLATFORM}:subnet/subnet-0abc"), "h100")),
    Mutation("ram-share-from-production", "ram.capacity-reservations-only", GRAPH,
             lambda f: f.add("inference", "aws:ram/resourceShare:ResourceShare", "leak",
                             {"name": "leak", "allowExternalPrincipals": True})),
    Mutation("ram-share-to-organization", "ram.principals-in-fleet", GRAPH,
             lambda f: f.edit("platform", "aws:ram/principalAssociation:PrincipalAssociation",
                              setter("principal", f"arn:aws:organizations::{PLATFORM}:organization/o-abc123"),
                              "h100-use1-az4-share-333")),
    Mutation("operator-role-without-external-id", "iam.role-trust", GRAPH,
             lambda f: f.edit("training", ROLE, policy_edit("assumeRolePolicy", strip_external_id),
                              "baseline-operator")),
    Mutation("operator-role-may-do-anything-in-ec2", "iam.operator-permissions", GRAPH,
             lambda f: f.edit("inference", ROLE_POLICY, add_statement(
                 {"Sid": "Oops", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"}), "baseline-operator")),
    Mutation("operator-role-scales-any-asg", "iam.operator-permissions", GRAPH,
             lambda f: f.edit("training", ROLE_POLICY, policy_edit("policy", scale_anything), "baseline-operator")),
    Mutation("operator-role-gets-admin", "iam.operator-permissions", GRAPH,
             lambda f: f.add("inference", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "operator-admin",
                             {"role": "gpufleet-operator",
                              "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})),
    Mutation("trail-without-s3-data-events", "audit.s3-object-level", GRAPH,
             lambda f: f.edit("inference", TRAIL, lambda i: i.update(
                 advancedEventSelectors=i["advancedEventSelectors"][:1]))),
    Mutation("trail-excludes-release-bucket", "audit.s3-object-level", GRAPH,
             lambda f: f.edit("platform", TRAIL, lambda i: i["advancedEventSelectors"][1]["fieldSelectors"][2][
                 "notStartsWiths"].append(f"arn:aws:s3:::{f.find('platform', BUCKET, 'releases').outputs['bucket']}/"))),
    Mutation("trail-records-only-reads-of-datasets", "audit.s3-object-level", GRAPH,
             lambda f: f.edit("training", TRAIL, lambda i: i["advancedEventSelectors"][1]["fieldSelectors"].append(
                 {"field": "readOnly", "equals": ["true"]}))),
    Mutation("trail-not-in-cloudwatch-logs", "cloudtrail.cloudwatch-logs", GRAPH,
             lambda f: f.edit("inference", TRAIL, setter("cloudWatchLogsGroupArn", None))),
    Mutation("no-root-use-metric-filter", "cloudtrail.cis-alarms", GRAPH,
             lambda f: f.drop("training", "aws:cloudwatch/logMetricFilter:LogMetricFilter", "cis-4-3")),
    Mutation("security-group-filter-misses-an-event", "cloudtrail.cis-alarms", GRAPH,
             lambda f: f.edit("inference", "aws:cloudwatch/logMetricFilter:LogMetricFilter", lambda i: i.update(
                 pattern=i["pattern"].replace(" || ($.eventName = DeleteSecurityGroup)", "")), "cis-4-10")),
    Mutation("key-deletion-alarm-pages-nobody", "cloudtrail.cis-alarms", GRAPH,
             lambda f: f.edit("platform", "aws:cloudwatch/metricAlarm:MetricAlarm", setter("alarmActions", []),
                              "cis-4-7-alarm")),
    Mutation("default-security-group-allows-itself", "vpc.default-sg-closed", GRAPH,
             lambda f: f.edit("inference", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", setter("ingress", [
                 {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]))),
    Mutation("default-security-group-left-alone", "vpc.default-sg-closed", GRAPH,
             lambda f: f.drop("training", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")),
    Mutation("key-policy-names-autoscaling-role-before-it-exists", "kms.principals-exist", GRAPH,
             lambda f: f.edit("inference", KEY, add_statement(
                 {"Sid": "AutoScalingByName", "Effect": "Allow", "Principal": {"AWS": (
                     f"arn:aws:iam::{INFERENCE}:role/aws-service-role/autoscaling.amazonaws.com/"
                     "AWSServiceRoleForAutoScaling")}, "Action": "kms:Decrypt", "Resource": "*"}),
                 "node-volumes-key")),
    Mutation("dataset-key-without-fsx-statement", "fsx.dra-key-grants", GRAPH,
             lambda f: f.edit("training", KEY, policy_edit("policy", remove_sid("FsxDataRepositoryUse")),
                              "storage-key")),
    Mutation("pool-shared-by-invitation-nobody-accepts", "ram.shares-accepted", GRAPH,
             lambda f: f.edit("platform", "aws:ram/resourceShare:ResourceShare",
                              setter("allowExternalPrincipals", True), "h100")),
    Mutation("slurm-head-ami-as-ssm-string", "ec2.instance-ami-resolved", GRAPH,
             lambda f: f.edit("training", "aws:ec2/instance:Instance", setter(
                 "ami", "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
                        "base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"))),
    Mutation("slurm-head-pages-nobody", "ec2.instance-recovery", GRAPH,
             lambda f: [r for r in f.resources() if not (
                 r.stack == "training" and r.type == "aws:cloudwatch/metricAlarm:MetricAlarm" and "slurm-head" in r.name)]),
    Mutation("slurm-head-never-recovers", "ec2.instance-recovery", GRAPH,
             lambda f: Fleet(f.specs, {**f.stacks, "training": dataclasses.replace(f.stacks["training"], resources=[
                 r for r in f.edit("training", "aws:ec2/instance:Instance",
                                   setter("maintenanceOptions.autoRecovery", "disabled"))
                 if r.stack == "training"])}).edit(
                 "training", "aws:cloudwatch/metricAlarm:MetricAlarm", setter("alarmActions", []), "system-check")),
    Mutation("log-group-without-kms", "logs.cmk", GRAPH,
             lambda f: f.edit("inference", "aws:cloudwatch/logGroup:LogGroup", setter("kmsKeyId", None),
                              "network-flow-logs")),
    Mutation("kms-rotation-off", "kms.rotation", GRAPH,
             lambda f: f.edit("training", KEY, setter("enableKeyRotation", False), "storage-key")),
    Mutation("key-policy-grants-outsider", "kms.key-policy-scope", GRAPH,
             lambda f: f.edit("training", KEY, add_statement(
                 {"Sid": "Vendor", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OUTSIDER}:root"},
                  "Action": "kms:Decrypt", "Resource": "*"}), "storage-key")),
    Mutation("release-key-lets-inference-encrypt", "kms.key-policy-scope", GRAPH,
             lambda f: f.edit("platform", KEY, add_statement(
                 {"Sid": "InferenceWrites", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{INFERENCE}:root"},
                  "Action": "kms:GenerateDataKey*", "Resource": "*"}), "release-key")),
    Mutation("inference-writes-release-bucket", "fleet.release-flow", GRAPH,
             lambda f: f.edit("platform", BUCKET_POLICY, add_statement(
                 {"Sid": "InferenceWrites", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{INFERENCE}:root"},
                  "Action": "s3:PutObject", "Resource": "arn:aws:s3:::releases/*"}), "releases")),
    Mutation("training-bucket-shared-with-inference", "fleet.release-flow", GRAPH,
             lambda f: f.edit("training", BUCKET_POLICY, add_statement(
                 {"Sid": "Serve", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{INFERENCE}:root"},
                  "Action": "s3:GetObject", "Resource": "arn:aws:s3:::datasets/*"}), "storage-datasets")),
    Mutation("phi-dra-to-training-bucket", "fleet.phi-dra-same-account", GRAPH,
             lambda f: f.add("inference", "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation", "phi-dra",
                             {"fileSystemId": "fs-0123", "fileSystemPath": "/data",
                              "dataRepositoryPath": f"s3://{training_bucket_name(f)}/datasets/"})),
    Mutation("sns-topic-without-cmk", "sns.cmk", GRAPH,
             lambda f: f.edit("platform", "aws:sns/topic:Topic", setter("kmsMasterKeyId", None), "monitoring")),
    Mutation("journal-table-on-aws-owned-key", "dynamodb.cmk", GRAPH,
             lambda f: f.edit("platform", "aws:dynamodb/table:Table", setter("serverSideEncryption.kmsKeyArn", None))),
    Mutation("secret-on-aws-managed-key", "secretsmanager.cmk", GRAPH,
             lambda f: f.add("inference", "aws:secretsmanager/secret:Secret", "db-password",
                             {"name": "db", "kmsKeyId": "alias/aws/secretsmanager"})),
    Mutation("default-ebs-encryption-off", "ebs.default-encryption", GRAPH,
             lambda f: f.edit("training", "aws:ebs/encryptionByDefault:EncryptionByDefault", setter("enabled", False))),
    Mutation("vpc-without-flow-logs", "vpc.flow-logs", GRAPH,
             lambda f: f.drop("inference", "aws:ec2/flowLog:FlowLog")),
    Mutation("prometheus-workspace-in-production", "fleet.metrics-platform-only", GRAPH,
             lambda f: f.add("inference", "aws:amp/workspace:Workspace", "local-prometheus", {"alias": "local"})),
    Mutation("remote-write-role-trusts-outsider", "fleet.metrics-platform-only", GRAPH,
             lambda f: f.edit("platform", ROLE, add_statement(
                 {"Sid": "Vendor", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OUTSIDER}:root"},
                  "Action": "sts:AssumeRole"}, prop="assumeRolePolicy"), "monitoring-remote-write")),
    Mutation("collector-assumes-any-role", "iam.assume-only-platform", GRAPH,
             lambda f: f.edit("inference", ROLE_POLICY, policy_edit("policy", lambda d: d["Statement"][0].update(
                 Resource="*")), "metrics-collector")),
    Mutation("collector-remote-writes-elsewhere", "fleet.metrics-platform-only", GRAPH,
             lambda f: f.edit("training", ROLE_POLICY, add_statement(
                 {"Sid": "Elsewhere", "Effect": "Allow", "Action": "aps:RemoteWrite",
                  "Resource": f"arn:aws:aps:us-east-1:{OUTSIDER}:workspace/ws-1"}), "metrics-collector")),
]

MUTATIONS += NETWORK_MUTATIONS


def test_mutation_ids_are_unique_and_many():
    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids))
    assert len(MUTATIONS) >= 30


def test_reference_stacks_produce_no_findings(fleet: Fleet):
    findings = fleet.findings()
    assert findings == [], "\n".join(f"{f.rule} {f.stack}/{f.resource}: {f.message}" for f in findings)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_mutation_is_caught_by_its_rule(fleet: Fleet, mutation: Mutation, request):
    resources = mutation.apply(fleet)
    assert resources != fleet.resources(), "the mutation changed nothing"
    specs = mutation.specs(fleet) if mutation.specs else None
    findings = fleet.findings(resources, specs)
    fired = sorted({f.rule for f in findings})
    caught = mutation.rule in fired
    request.config.stash.setdefault(RESULTS, {})[mutation.id] = (mutation.rule, caught, fired)
    assert caught, f"{mutation.id}: expected {mutation.rule}, got {fired}"
    ours = [f for f in findings if f.rule == mutation.rule]
    assert all(f.severity in ("error", "warning") and f.message for f in ours)

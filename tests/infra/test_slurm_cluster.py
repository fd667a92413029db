"""SlurmCluster under mocks: head node at slurm.conf's address, bundle in a private bucket, munge
secret under the CMK with no key in state, node groups that join by user data; and the training
stack composed with it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gpufleet.infra.model import NodeGroupSpec
from gpufleet.infra.slurm_cluster import (
    FsxMount,
    SlurmCluster,
    SlurmClusterArgs,
    SlurmHost,
    SlurmHostArgs,
    SlurmNodeGroup,
    SlurmNodeGroupArgs,
)
from gpufleet.infra.slurm_plan import plan_slurm
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.bootstrap.user_data import NodeRole

REPO = Path(__file__).resolve().parents[2]
PLAN = plan_slurm(load_stack(REPO / "stacks" / "Pulumi.training.yaml"))


def cluster() -> SlurmCluster:
    return SlurmCluster("slurm", SlurmClusterArgs(
        plan=PLAN, account_id="222222222222", region="us-east-1", vpc_id="vpc-1", vpc_cidr="10.20.0.0/16",
        s3_prefix_list_id="pl-63a5400a", head_subnet_id="subnet-0head"))


GROUP = NodeGroupSpec(name="train-h100", pool="h100-use1-az4", instance_type="p5.48xlarge", initial_nodes=5,
                      min_nodes=0, max_nodes=8)


def node_group(c: SlurmCluster, **overrides) -> SlurmNodeGroup:
    args = dict(cluster=c, node_group=GROUP, num_gpus=8, efa_interfaces=32,
                launch_template_id="lt-1", launch_template_version="1", subnet_id="subnet-0az4",
                fsx=FsxMount(dns_name="fs-1.fsx.us-east-1.amazonaws.com", mount_name="abcdef12", mount_path="/fsx"),
                tags={"gpufleet:stack": "training", "gpufleet:role": "training"})
    args.update(overrides)
    return SlurmNodeGroup("train-h100", SlurmNodeGroupArgs(**args))


def objects_by_key(mock_runtime) -> dict[str, dict]:
    return {r["inputs"]["key"]: r for r in mock_runtime.registered("aws:s3/bucketObjectv2:BucketObjectv2")}


def test_plan_fixes_head_address_and_bucket_name() -> None:
    assert (PLAN.head_az_id, PLAN.head_address) == ("use1-az4", "10.20.0.10")
    assert PLAN.bucket_name == "gpufleet-training-222222222222-us-east-1-lifecycle"
    assert "SlurmctldHost=slurm-head(10.20.0.10)" in PLAN.files["slurm/slurm.conf"]
    assert PLAN.bundle_uri == f"s3://{PLAN.bucket_name}/lifecycle/{PLAN.version}/"


def test_head_node_sits_at_the_slurm_conf_address_private_and_encrypted(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.head_instance_id)
    [head] = mock_runtime.registered("aws:ec2/instance:Instance")
    inputs = head["inputs"]
    assert inputs["privateIp"] == "10.20.0.10" and inputs["subnetId"] == "subnet-0head", head["urn"]
    assert inputs["associatePublicIpAddress"] is False, head["urn"]
    assert inputs["metadataOptions"]["httpTokens"] == "required", head["urn"]
    [key] = mock_runtime.registered("aws:kms/key:Key")
    assert inputs["rootBlockDevice"]["encrypted"] is True
    assert inputs["rootBlockDevice"]["kmsKeyId"] == key["outputs"]["arn"], head["urn"]
    script = base64.b64decode(inputs["userDataBase64"]).decode()
    assert PLAN.bundle_uri in script and "nodes/slurm-head.env" in script
    assert "bootstrap/on_create.sh" in script


def test_munge_secret_is_under_the_cmk_and_no_key_is_in_state(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.munge_secret_arn)
    [secret] = mock_runtime.registered("aws:secretsmanager/secret:Secret")
    [key] = mock_runtime.registered("aws:kms/key:Key")
    assert secret["inputs"]["kmsKeyId"] == key["outputs"]["arn"], secret["urn"]
    assert mock_runtime.registered("aws:secretsmanager/secretVersion:SecretVersion") == []


def test_bundle_objects_hold_scripts_and_the_rendered_slurm_conf(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.bucket_name)
    objects = objects_by_key(mock_runtime)
    prefix = f"lifecycle/{PLAN.version}/"
    assert all(k.startswith(prefix) for k in objects)
    for path in ("bootstrap/on_create.sh", "bootstrap/steps/70-join.sh", "slurm/slurm.conf",
                 "bootstrap/steps/65-slurmdbd.sh", "slurm/slurmdbd.conf", "slurm/gres/train-h100.conf", "health/slurm_healthcheck.sh", "nodes/slurm-head.env"):
        assert prefix + path in objects, path
    assert objects[prefix + "slurm/slurm.conf"]["inputs"]["content"] == PLAN.files["slurm/slurm.conf"]
    assert "StoragePass" not in objects[prefix + "slurm/slurmdbd.conf"]["inputs"]["content"]  # no secret in S3
    head_env = objects[prefix + "nodes/slurm-head.env"]["inputs"]["content"]
    assert "GPUFLEET_ROLE=slurm-head" in head_env
    assert "GPUFLEET_MUNGE_SECRET_ID=arn:aws:secretsmanager:us-east-1:222222222222:secret:" in head_env


def test_bucket_is_kms_encrypted_private_and_tls_only(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.bucket_name)
    [bucket] = [b for b in mock_runtime.registered("aws:s3/bucket:Bucket")]
    assert bucket["inputs"]["bucket"] == PLAN.bucket_name
    [sse] = mock_runtime.registered(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]
    assert rule["sseAlgorithm"] == "aws:kms" and rule["kmsMasterKeyId"].startswith("arn:aws:kms:")
    [block] = mock_runtime.registered("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block["inputs"][k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                    "restrictPublicBuckets"))
    [policy] = mock_runtime.registered("aws:s3/bucketPolicy:BucketPolicy")
    statement = json.loads(policy["inputs"]["policy"])["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_head_node_may_write_the_munge_key(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.node_instance_profile_arn)
    policies = {r["name"]: json.loads(r["inputs"]["policy"])
                for r in mock_runtime.registered("aws:iam/rolePolicy:RolePolicy")}
    actions = {name: {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
               for name, doc in policies.items()}
    assert "secretsmanager:PutSecretValue" in actions["slurm-head-access"]
    assert "secretsmanager:PutSecretValue" not in actions["slurm-node-access"]
    assert "secretsmanager:GetSecretValue" in actions["slurm-node-access"]


def test_cluster_security_group_admits_only_itself(mock_runtime) -> None:
    c = cluster()
    mock_runtime.settle(c.security_group_id)
    [sg] = [r for r in mock_runtime.registered("aws:ec2/securityGroup:SecurityGroup") if r["name"] == "slurm-sg"]
    for rule in sg["inputs"]["ingress"]:
        assert rule.get("self") is True and not rule.get("cidrBlocks"), sg["urn"]


def test_node_group_env_carries_partition_gres_and_fsx_and_asg_leaves_desired_size(mock_runtime) -> None:
    c = cluster()
    group = node_group(c)
    mock_runtime.settle(group.asg_name)
    env = objects_by_key(mock_runtime)[f"lifecycle/{PLAN.version}/nodes/train-h100.env"]["inputs"]["content"]
    for line in ("GPUFLEET_ROLE=slurm-compute", "GPUFLEET_SLURM_NODE_CONF='Feature=train-h100 Gres=gpu:h100:8'",
                 "GPUFLEET_FSX_DNS_NAME=fs-1.fsx.us-east-1.amazonaws.com", "GPUFLEET_EFA_INTERFACES=32",
                 "GPUFLEET_NUM_GPUS=8"):
        assert line in env.splitlines(), line
    [asg] = mock_runtime.registered("aws:autoscaling/group:Group")
    assert asg["ignore_changes"] == ("desiredCapacity",), asg["urn"]
    assert (asg["inputs"]["minSize"], asg["inputs"]["maxSize"], asg["inputs"]["desiredCapacity"]) == (0, 8, 5)
    tags = {t["key"]: t["value"] for t in asg["inputs"]["tags"]}
    assert tags["gpufleet:orchestrator"] == "slurm" and tags["gpufleet:slurm-partition"] == "train-h100"
    # The contract's asg_tags are exactly the group's tags; the stack's tags are set by hand (provider
    # default tags never reach an Auto Scaling group).
    assert group.asg_tags == tags and tags["gpufleet:stack"] == "training"


def test_group_user_data_points_at_the_groups_env() -> None:
    script = base64.b64decode(SlurmCluster.group_user_data.__get__(_FakeCluster())("train-h200")).decode()
    assert "nodes/train-h200.env" in script and PLAN.bundle_uri in script


class _FakeCluster:
    """Just what user_data reads: the plan and the region (no resources)."""

    plan = PLAN
    region = "us-east-1"

    def user_data(self, env_path: str) -> str:
        return SlurmCluster.user_data(self, env_path)  # type: ignore[arg-type]


def test_login_node_is_optional_and_mounts_fsx(mock_runtime) -> None:
    c = cluster()
    env = c.node_env(_login_params(), FsxMount(dns_name="fs-1.fsx", mount_name="m", mount_path="/fsx"))
    login = SlurmHost("slurm-login", SlurmHostArgs(
        cluster=c, role=NodeRole.SLURM_LOGIN, node_env=env, env_path="nodes/slurm-login.env",
        instance_type="m7i.xlarge", subnet_id="subnet-0head", instance_profile_name=c.node_instance_profile.name))
    mock_runtime.settle(login.instance.id)
    assert len(mock_runtime.registered("aws:ec2/instance:Instance")) == 2
    content = objects_by_key(mock_runtime)[f"lifecycle/{PLAN.version}/nodes/slurm-login.env"]["inputs"]["content"]
    assert "GPUFLEET_FSX_MOUNT_PATH=/fsx" in content and "GPUFLEET_ROLE=slurm-login" in content
    with pytest.raises(ValueError, match="role"):
        SlurmHostArgs(cluster=c, role=NodeRole.SLURM_COMPUTE, node_env="", env_path="x", instance_type="m7i.large",
                      subnet_id="s", instance_profile_name="p")


def _login_params():
    from gpufleet.lifecycle.bootstrap.user_data import NodeParams
    return NodeParams(role=NodeRole.SLURM_LOGIN, region="us-east-1", bundle_version=PLAN.version)


def test_training_stack_composes_slurm(rendered_fleet) -> None:
    training = rendered_fleet["training"]
    assert len(training.of_type("gpufleet:slurm:SlurmCluster")) == 1
    assert sorted(r.name for r in training.of_type("gpufleet:slurm:SlurmNodeGroup")) == ["train-h100", "train-h200"]
    profile_arn = training.of_type("aws:iam/instanceProfile:InstanceProfile")
    node_profile = next(p for p in profile_arn if p.name == "slurm-node-profile").outputs["arn"]
    for lt in training.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        assert lt.inputs["iamInstanceProfile"]["arn"] == node_profile, lt.urn
        script = base64.b64decode(lt.inputs["userData"]).decode()
        assert "bootstrap/on_create.sh" in script and "nodes/" in script, lt.urn
    cluster_export = training.exports["cluster"]
    assert cluster_export["kind"] == "slurm" and cluster_export["headAddress"] == "10.20.0.10"
    assert [g["orchestrator"] for g in training.exports["nodeGroups"]] == ["slurm", "slurm"]


def test_slurm_jobs_cannot_reach_node_credentials_or_the_munge_key(rendered_fleet) -> None:
    """Rendered graph of the training stack: every Slurm node's metadata service takes tokens only
    and one hop (no container gets it); the bundle every node boots carries the IMDS guard (jobs,
    which run as their users, cannot reach it: tests/lifecycle/bootstrap); the compute role may read
    exactly the munge secret and write nothing."""
    training = rendered_fleet["training"]
    templates = training.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates
    for lt in templates:
        options = lt.inputs["metadataOptions"]
        assert options["httpTokens"] == "required" and options["httpPutResponseHopLimit"] == 1, lt.urn
        assert options.get("httpProtocolIpv6") in (None, "disabled"), lt.urn
    for host in training.of_type("aws:ec2/instance:Instance"):
        options = host.inputs["metadataOptions"]
        assert options["httpTokens"] == "required" and options["httpPutResponseHopLimit"] == 1, host.urn
    keys = {o.inputs["key"].split("/", 2)[-1]: o.inputs["content"]
            for o in training.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    guard = keys["bootstrap/steps/15-imds-guard.sh"]
    assert "-m owner ! --uid-owner 0 -j REJECT" in guard and "169.254.169.254/32" in guard and "fd00:ec2::254" in guard
    [secret] = training.of_type("aws:secretsmanager/secret:Secret")
    [node_policy] = [p for p in training.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "slurm-node-access"]
    statements = json.loads(node_policy.inputs["policy"])["Statement"]
    secret_statements = [s for s in statements if any(str(a).startswith("secretsmanager:") for a in s["Action"])]
    assert secret_statements == [{"Sid": "MungeKey", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                                  "Resource": [secret.outputs["arn"]]}]


def test_the_healer_archive_lands_beside_the_bundle_without_changing_its_version(mock_runtime) -> None:
    from gpufleet.infra.healer_archive import healer_files

    files = healer_files('{"version": 1}')
    c = SlurmCluster("slurm", SlurmClusterArgs(
        plan=PLAN, account_id="222222222222", region="us-east-1", vpc_id="vpc-1", vpc_cidr="10.20.0.0/16",
        s3_prefix_list_id="pl-63a5400a", head_subnet_id="subnet-0head", healer_files=files))
    mock_runtime.settle(c.bucket_name)
    objects = objects_by_key(mock_runtime)
    prefix = f"lifecycle/{PLAN.version}/"
    healer = {k.removeprefix(prefix + "healer/"): o["inputs"]["content"] for k, o in objects.items()
              if k.startswith(prefix + "healer/")}
    assert healer == files
    assert {"gpufleet/automation/heal/__main__.py", "gpufleet/automation/heal/decisions.csv",
            "fleet/inventory.json", "yaml/__init__.py"} <= set(healer)
    assert not any(p.startswith(("gpufleet/automation/cli/", "typer/", "rich/", "pulumi")) for p in healer)
    # Beside the bundle, not in it: the GPU nodes' bundle (and its version) is the same without the healer.
    rest = {k.removeprefix(prefix) for k in objects if not k.startswith(prefix + "healer/")}
    assert rest == {*PLAN.files, "nodes/slurm-head.env"}
    # The head boots only once the archive is there, as for the bundle.
    assert len(c.bundle_objects) == len(PLAN.files) + len(files)

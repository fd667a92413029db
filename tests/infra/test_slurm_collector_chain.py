"""The Slurm head's collector in the rendered training stack: its config and AWS profile in the
bundle, and the SigV4 chain head role -> collector role -> the platform's remote-write role, each
hop allowed by exactly one trust and one permission (and clean under parliament)."""

from __future__ import annotations

import json
import warnings

import yaml

from gpufleet.infra import metrics_agent, slurm_collector
from gpufleet.infra.monitoring import COLLECTOR_ROLE, REMOTE_WRITE_ROLE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # parliament imports pkg_resources
    import parliament


def _object(stack, path: str):
    [obj] = [o for o in stack.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if o.inputs["key"].endswith(f"/{path}")]
    return obj


def _role_policies(stack, role):
    return [json.loads(p.inputs["policy"]) for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.inputs["role"] in (role.id, role.outputs.get("name"))]


def test_head_collector_remote_writes_to_the_platform_through_the_collector_role(rendered_fleet):
    platform, training = rendered_fleet["platform"], rendered_fleet["training"]
    monitoring = platform.exports["monitoring"]
    config = yaml.safe_load(_object(training, slurm_collector.CONFIG_PATH).inputs["content"])
    [remote] = config["remote_write"]
    assert remote["url"] == monitoring["remoteWriteUrl"]
    assert remote["sigv4"] == {"region": training.spec.region, "role_arn": monitoring["remoteWriteRoleArn"],
                               "profile": metrics_agent.COLLECTOR_PROFILE}
    assert config["global"]["external_labels"] == {"account": training.spec.account_id, "stack": "training"}
    pools = {r["regex"].replace("\\", ""): r["replacement"] for job in config["scrape_configs"]
             for r in job["relabel_configs"] if r.get("target_label") == "pool"}
    assert pools == {g.name: g.pool for g in training.spec.node_groups}

    # Hop 1: the head's instance role may assume the collector role, which trusts it by ARN.
    [collector] = [r for r in training.of_type("aws:iam/role:Role") if r.inputs.get("name") == COLLECTOR_ROLE]
    profile = _object(training, slurm_collector.PROFILE_PATH).inputs["content"]
    assert f"role_arn = {collector.outputs['arn']}\n" in profile
    [head_profile] = [p for p in training.of_type("aws:iam/instanceProfile:InstanceProfile")
                      if p.name == "slurm-head-profile"]
    [head_role] = [r for r in training.of_type("aws:iam/role:Role") if r.outputs["name"] == head_profile.inputs["role"]]
    assert {"Sid": "AssumeCollectorRole", "Effect": "Allow", "Action": "sts:AssumeRole",
            "Resource": collector.outputs["arn"]} in [s for p in _role_policies(training, head_role)
                                                      for s in p["Statement"]]
    trust = json.loads(collector.inputs["assumeRolePolicy"])["Statement"]
    assert {"Sid": "CollectorHosts", "Effect": "Allow", "Principal": {"AWS": [head_role.outputs["arn"]]},
            "Action": "sts:AssumeRole"} in trust
    # Hop 2: the collector role may assume the platform's remote-write role, which trusts only it.
    assert [s["Resource"] for p in _role_policies(training, collector) for s in p["Statement"]] == [
        monitoring["remoteWriteRoleArn"]]
    [remote_role] = [r for r in platform.of_type("aws:iam/role:Role") if r.inputs.get("name") == REMOTE_WRITE_ROLE]
    [statement] = json.loads(remote_role.inputs["assumeRolePolicy"])["Statement"]
    assert collector.outputs["arn"] in statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
    # The head waits for both files: its bootstrap installs them at first boot.
    [head] = [i for i in training.of_type("aws:ec2/instance:Instance") if i.name == "slurm-head-instance"]
    assert head_profile.outputs["name"] == head.inputs["iamInstanceProfile"]


def test_the_inference_stack_on_eks_has_no_head_collector(rendered_fleet):
    inference = rendered_fleet["inference"]
    keys = [o.inputs["key"] for o in inference.of_type("aws:s3/bucketObjectv2:BucketObjectv2")]
    assert not [k for k in keys if k.endswith(slurm_collector.CONFIG_PATH)]
    [collector] = [r for r in inference.of_type("aws:iam/role:Role") if r.inputs.get("name") == COLLECTOR_ROLE]
    assert "CollectorHosts" not in collector.inputs["assumeRolePolicy"]


def test_the_chain_policies_pass_parliament(rendered_fleet):
    training = rendered_fleet["training"]
    [collector] = [r for r in training.of_type("aws:iam/role:Role") if r.inputs.get("name") == COLLECTOR_ROLE]
    head_policies = [p.inputs["policy"] for p in training.of_type("aws:iam/rolePolicy:RolePolicy")
                     if p.name == "slurm-collector-assume-collector"]
    assert len(head_policies) == 1
    for document in [*head_policies, *(json.dumps(p) for p in _role_policies(training, collector))]:
        findings = parliament.analyze_policy_string(document).findings
        assert findings == [], [(f.issue, f.detail) for f in findings]

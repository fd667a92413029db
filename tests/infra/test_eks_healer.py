"""The healer's Deployment on a training EKS cluster, as the program renders it: every Kubernetes
object valid under the official schemas (the same validator as the Kubernetes fake), the pod
restricted and read-only, its RBAC exactly the EKS heal path's calls, its Pod Identity role
trusted by EKS and by the operator and journal roles, the ECR repository hardened, and the
guardrails clean over the whole fleet."""

from __future__ import annotations

import json

import pytest
import yaml

from gpufleet.infra import baseline_policies as policies
from gpufleet.infra import eks_healer, healer_image, stackfile
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.guardrails import FleetContext, evaluate
from gpufleet.infra.offline.render import render_fleet
from gpufleet.infra.slurm_composition import collected_inventory
from tests.fakes.kube import invalid
from tests.infra.conftest import REPO
from tests.infra.test_healer_identity import trusts


def stack_files(tmp_path, **training: object):
    """The reference stack files with training switched to EKS and ``training``'s keys set."""
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if path.name == "Pulumi.training.yaml":
            doc["config"]["gpufleet:clusterKind"] = "eks"
            doc["config"]["gpufleet:eksPublicAccessCidrs"] = ["203.0.113.0/24"]
            doc["config"].update({f"gpufleet:{k}": v for k, v in training.items()})
        (tmp_path / path.name).write_text(yaml.safe_dump(doc))
    return tmp_path


def image_of(spec_account: str, region: str, tag: str = "2026.12.1") -> str:
    return f"{healer_image.repository_url(spec_account, region)}:{tag}"


@pytest.fixture(scope="module")
def reference():
    raw = yaml.safe_load((REPO / "stacks" / "Pulumi.training.yaml").read_text())["config"]
    return raw["gpufleet:accountId"], raw["aws:region"]


@pytest.fixture(scope="module")
def healer_fleet(tmp_path_factory, reference):
    stacks = stack_files(tmp_path_factory.mktemp("stacks"), healerImage=image_of(*reference))
    specs = [stackfile.load_stack(stacks / f"Pulumi.{n}.yaml") for n in ("platform", "training", "inference")]
    return specs, {r.spec.name: r for r in render_fleet(specs)}


def healer_resources(stack):
    return [r for r in stack.resources if r.name.startswith("eks-healer")]


def one(stack, type_token: str, name: str):
    [found] = [r for r in stack.resources if r.type == type_token and r.name == name]
    return found


def test_every_kubernetes_object_of_the_healer_is_valid_under_the_official_schema(healer_fleet):
    _, stacks = healer_fleet
    objects = [r for r in healer_resources(stacks["training"]) if r.type.startswith("kubernetes:")]
    assert sorted(r.type.rsplit(":", 1)[1] for r in objects) == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "RoleBinding", "ServiceAccount"]
    for r in objects:
        obj = dict(r.inputs)
        assert obj["apiVersion"] and obj["kind"], r.name
        assert invalid(obj) is None, (r.name, invalid(obj))
        assert r.provider.endswith("::gpufleet-training-k8s"), r.provider  # the cluster's own API
        if "namespace" in obj["metadata"]:
            assert obj["metadata"]["namespace"] == "gpufleet-system"


def test_the_deployment_is_one_restricted_read_only_replica_running_the_healer_loop(healer_fleet, reference):
    _, stacks = healer_fleet
    spec = one(stacks["training"], "kubernetes:apps/v1:Deployment", "eks-healer-deployment").inputs["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == eks_healer.SERVICE_ACCOUNT
    assert pod["nodeSelector"] == {"gpufleet.io/system": "true"}  # never on a GPU node it might drain
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    [container] = pod["containers"]
    assert container["image"] == image_of(*reference)
    context = container["securityContext"]
    # The restricted Pod Security Standard, and a root file system nothing can write.
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True and context["runAsUser"] == healer_image.RUN_AS != 0
    assert context["readOnlyRootFilesystem"] is True
    assert set(container["resources"]) == {"requests", "limits"} and container["resources"]["limits"]["memory"]
    args = container["args"]
    option = dict(zip(args[::2], args[1::2], strict=True))
    assert option["--orchestrator"] == "eks" and option["--identity"] == "instance"
    assert option["--sources"] == "ec2"  # the instance identity may not query the Managed Prometheus
    assert option["--tiers"] == ",".join(stacks["training"].spec.health_gate.tiers)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    inventory_dir, _, _ = option["--inventory"].rpartition("/")
    assert mounts[inventory_dir]["readOnly"] is True
    heartbeat_dir = option["--heartbeat"].rpartition("/")[0]
    assert heartbeat_dir in mounts and not mounts[heartbeat_dir].get("readOnly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[heartbeat_dir]["name"]]["emptyDir"]["medium"] == "Memory"
    assert volumes[mounts[inventory_dir]["name"]]["configMap"]["name"] == "gpufleet-healer-inventory"
    probe = container["livenessProbe"]["exec"]["command"]
    assert probe[:2] == ["python", "-c"] and option["--heartbeat"] in probe[2]


def test_the_liveness_probe_fails_on_a_stale_heartbeat_only(tmp_path):
    import os
    import subprocess
    import sys
    import time

    beat = tmp_path / "heartbeat"
    command = eks_healer.liveness_command()
    code = command[2].replace(repr(eks_healer.HEARTBEAT), repr(str(beat)))
    assert code != command[2]

    def probe() -> int:
        return subprocess.run([sys.executable, "-c", code], check=False, timeout=30).returncode

    beat.touch()
    assert probe() == 0
    stale = time.time() - eks_healer.HEARTBEAT_STALE_S - 5
    os.utime(beat, (stale, stale))
    assert probe() == 1
    beat.unlink()
    assert probe() != 0  # never written: the healer never got going


def test_the_healer_rbac_is_exactly_the_heal_paths_calls(healer_fleet):
    _, stacks = healer_fleet
    training = stacks["training"]
    role = one(training, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "eks-healer-cluster-role").inputs
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert granted == {("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "patch"), ("", "pods", "list"),
                       ("", "pods/eviction", "create")}
    subject = [{"kind": "ServiceAccount", "name": eks_healer.SERVICE_ACCOUNT, "namespace": "gpufleet-system"}]
    binding = one(training, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "eks-healer-cluster-binding")
    assert binding.inputs["subjects"] == subject and binding.inputs["roleRef"]["name"] == role["metadata"]["name"]
    # The gate's probe Jobs: the health gate's own Role, bound to the healer too (one rule set).
    gate = one(training, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "eks-healer-health-gate-binding")
    [gate_role] = [r for r in training.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
                   if r.inputs["metadata"]["name"] == gate.inputs["roleRef"]["name"]]
    assert gate.inputs["subjects"] == subject
    assert gate_role.inputs["metadata"]["namespace"] == gate.inputs["metadata"]["namespace"] == "gpufleet-system"


def test_pod_identity_binds_the_service_account_to_a_role_eks_may_assume_and_tag(healer_fleet):
    _, stacks = healer_fleet
    training = stacks["training"]
    account = training.spec.account_id
    # The agent that serves the association's credentials to the pod runs on the cluster.
    assert [a.inputs["clusterName"] for a in training.of_type("aws:eks/addon:Addon")
            if a.inputs["addonName"] == "eks-pod-identity-agent"] == [
        one(training, "aws:eks/podIdentityAssociation:PodIdentityAssociation", "eks-healer-identity").inputs["clusterName"]]
    association = one(training, "aws:eks/podIdentityAssociation:PodIdentityAssociation", "eks-healer-identity").inputs
    assert (association["namespace"], association["serviceAccount"]) == ("gpufleet-system", eks_healer.SERVICE_ACCOUNT)
    role = one(training, "aws:iam/role:Role", "eks-healer-role")
    assert role.inputs["name"] == policies.EKS_HEALER_ROLE_NAME
    assert association["roleArn"] == role.outputs["arn"]
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": account, "aws:RequestTag/eks-cluster-name": association["clusterName"],
        "aws:RequestTag/kubernetes-namespace": "gpufleet-system",
        "aws:RequestTag/kubernetes-service-account": eks_healer.SERVICE_ACCOUNT}
    # What the head's healer may do, no more: assume the operator role and the journal role.
    [policy] = [r for r in training.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "eks-healer-role-policy"]
    platform_account = stacks["platform"].spec.account_id
    assert json.loads(policy.inputs["policy"]) == policies.head_permissions([
        f"arn:aws:iam::{account}:role/gpufleet-operator",
        f"arn:aws:iam::{platform_account}:role/gpufleet-healer-journal"])


def test_the_operator_and_journal_roles_trust_the_training_healer_and_never_inferences(healer_fleet):
    _, stacks = healer_fleet
    training, inference = stacks["training"].spec.account_id, stacks["inference"].spec.account_id
    pod_role = f"arn:aws:iam::{training}:role/{policies.EKS_HEALER_ROLE_NAME}"
    [operator] = [r for r in stacks["training"].of_type("aws:iam/role:Role") if r.name == "baseline-operator"]
    trust = json.loads(operator.inputs["assumeRolePolicy"])
    assert trusts(trust, pod_role, operator.outputs["arn"])
    assert not trusts(trust, f"arn:aws:iam::{training}:role/gpufleet-other", operator.outputs["arn"])
    [journal] = [r for r in stacks["platform"].of_type("aws:iam/role:Role") if r.name == "baseline-healer-journal"]
    journal_trust = json.loads(journal.inputs["assumeRolePolicy"])
    assert trusts(journal_trust, pod_role, journal.outputs["arn"])
    assert not trusts(journal_trust, f"arn:aws:iam::{inference}:role/{policies.EKS_HEALER_ROLE_NAME}",
                      journal.outputs["arn"])
    assert inference not in journal.inputs["assumeRolePolicy"]
    # The inference cluster gets no healer and its operator role trusts none.
    assert healer_resources(stacks["inference"]) == []
    [inference_operator] = [r for r in stacks["inference"].of_type("aws:iam/role:Role") if r.name == "baseline-operator"]
    assert policies.EKS_HEALER_ROLE_NAME not in inference_operator.inputs["assumeRolePolicy"]


def test_the_image_repository_is_immutable_scanned_encrypted_and_pruned(healer_fleet):
    _, stacks = healer_fleet
    training = stacks["training"]
    repository = one(training, "aws:ecr/repository:Repository", "eks-healer-repository").inputs
    assert repository["name"] == healer_image.REPOSITORY and repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    [encryption] = repository["encryptionConfigurations"]
    key = one(training, "aws:kms/key:Key", "eks-healer-image-key-key")
    assert encryption == {"encryptionType": "KMS", "kmsKey": key.outputs["arn"]} and key.inputs["enableKeyRotation"]
    lifecycle = one(training, "aws:ecr/lifecyclePolicy:LifecyclePolicy", "eks-healer-repository-lifecycle").inputs
    rules = json.loads(lifecycle["policy"])["rules"]
    assert lifecycle["repository"] == repository["name"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]
    assert all(r["action"] == {"type": "expire"} for r in rules)
    assert len({r["rulePriority"] for r in rules}) == len(rules)


def test_the_guardrails_pass_over_the_fleet_with_the_healer(healer_fleet):
    specs, stacks = healer_fleet
    findings = evaluate([r for s in stacks.values() for r in s.resources], FleetContext.from_specs(specs))
    assert findings == [], "\n".join(f"{f.rule} {f.stack}/{f.resource}: {f.message}" for f in findings)


def test_without_an_image_only_the_repository_is_rendered(training_on_eks):
    names = {r.type.rsplit(":", 1)[1] for r in healer_resources(training_on_eks["training"])}
    assert {"Repository", "LifecyclePolicy"} <= names
    assert not names & {"Deployment", "PodIdentityAssociation", "Role", "ServiceAccount"}


@pytest.mark.parametrize(("config", "problem"), [
    ({"healerImage": "{repo}:latest"}, "latest moves"),
    ({"healerImage": "{repo}@sha256:1234"}, "sha256:<64 hex digits>"),
    ({"healerImage": "public.ecr.aws/gpufleet/healer:1.0"}, "not an image of"),
    ({"healerImage": "{other}:1.0"}, "not an image of"),
    ({"healerImage": "{repo}:1.0", "clusterKind": "slurm", "eksPublicAccessCidrs": []}, "only an eks cluster"),
])
def test_a_bad_healer_image_is_refused_naming_the_key_and_value(tmp_path, reference, config, problem):
    repo = healer_image.repository_url(*reference)
    other = healer_image.repository_url("999999999999", reference[1])
    values = {k: v.format(repo=repo, other=other) if isinstance(v, str) else v for k, v in config.items()}
    stacks = stack_files(tmp_path, **values)
    with pytest.raises(ConfigError) as caught:
        stackfile.load_stack(stacks / "Pulumi.training.yaml")
    assert caught.value.key == "gpufleet:healerImage" and caught.value.value == values["healerImage"]
    assert problem in caught.value.problem and caught.value.code == 2


def test_a_digest_or_version_tag_is_accepted_and_inference_may_not_set_it(tmp_path, reference):
    digest = f"{healer_image.repository_url(*reference)}@sha256:{'ab' * 32}"
    spec = stackfile.load_stack(stack_files(tmp_path, healerImage=digest) / "Pulumi.training.yaml")
    assert spec.healer_image == digest
    inference = yaml.safe_load((REPO / "stacks" / "Pulumi.inference.yaml").read_text())
    inference["config"]["gpufleet:healerImage"] = digest
    with pytest.raises(ConfigError, match="not used by a inference stack|not used by an inference stack"):
        stackfile.parse_stack(inference["config"], name="inference", source="Pulumi.inference.yaml")


def test_the_collected_inventory_is_what_the_config_map_carries(tmp_path):
    from gpufleet.infra.program import SCHEDULER_INVENTORY

    assert collected_inventory("the EKS healer", tmp_path) is None
    (tmp_path / SCHEDULER_INVENTORY).parent.mkdir(parents=True)
    (tmp_path / SCHEDULER_INVENTORY).write_text('{"version": 1}')
    assert collected_inventory("the EKS healer", tmp_path) == '{"version": 1}'


def test_the_healers_policies_pass_parliament(healer_fleet):
    from tests.infra.test_policy_lint import documents, unjustified

    _, stacks = healer_fleet
    problems, count = [], 0
    for resource in [*healer_resources(stacks["training"]), *stacks["platform"].of_type("aws:iam/role:Role")]:
        for prop, document in documents(dict(resource.inputs), ""):
            count += 1
            problems += [f"{resource.urn} {prop}: {p}" for p in unjustified(resource.type, prop, document)]
    assert count >= 4, count  # the role's trust and policy, the image key's policy, the journal's trust
    assert problems == [], "\n".join(problems)

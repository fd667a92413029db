"""EksGpuCluster, EksGpuNodeGroup and EksGpuWorkloads under the mock runtime, and the EKS stacks
rendered whole (inference, and training switched to clusterKind eks from a copy of its stack file)."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from gpufleet.infra import eks_scheduling, stackfile
from gpufleet.infra.eks_cluster import MANAGED_ADDONS, EksGpuCluster, EksGpuClusterArgs
from gpufleet.infra.eks_node_group import EksGpuNodeGroup, EksGpuNodeGroupArgs, asg_name_of
from gpufleet.infra.eks_workloads import DCGM_EXPORTER, EFA_DEVICE_PLUGIN, NVIDIA_DEVICE_PLUGIN
from gpufleet.infra.model import ClusterKind, NodeGroupSpec, Role

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "222222222222"
SUBNETS = ["subnet-0aaa", "subnet-0bbb"]


def cluster_args(**overrides) -> EksGpuClusterArgs:
    values = dict(cluster_name="gpufleet-test", account_id=ACCOUNT, region="us-east-1", vpc_id="vpc-0123",
                  subnet_ids=SUBNETS, holds_phi=False)
    values.update(overrides)
    return EksGpuClusterArgs(**values)


GROUP = NodeGroupSpec(name="train-h100", pool="h100-use1-az4", instance_type="p5.48xlarge", initial_nodes=5,
                      min_nodes=0, max_nodes=8)


def node_group_args(**overrides) -> EksGpuNodeGroupArgs:
    values = dict(cluster_name="gpufleet-test", node_role_arn=f"arn:aws:iam::{ACCOUNT}:role/nodes",
                  pool_role=Role.TRAINING, node_group=GROUP, launch_template_id="lt-0123",
                  launch_template_version="1", subnet_id="subnet-0aaa")
    values.update(overrides)
    return EksGpuNodeGroupArgs(**values)


def control_plane_inputs(mock_runtime) -> dict:
    [registration] = mock_runtime.registered("eks:index:Cluster")
    return registration


def test_phi_cluster_has_a_private_endpoint_only(mock_runtime):
    cluster = EksGpuCluster("eks", cluster_args(holds_phi=True))
    mock_runtime.settle(cluster.cluster_name)
    plane = control_plane_inputs(mock_runtime)
    inputs, urn = plane["inputs"], plane["urn"]
    assert inputs["endpointPrivateAccess"] is True, urn
    assert inputs["endpointPublicAccess"] is False, urn
    assert "publicAccessCidrs" not in inputs, urn
    assert inputs["deletionProtection"] is True, urn
    assert cluster.endpoint_access == "private"


def test_non_phi_cluster_opens_the_public_endpoint_only_to_the_given_cidrs(mock_runtime):
    cluster = EksGpuCluster("eks", cluster_args(public_access_cidrs=("203.0.113.0/24",)))
    mock_runtime.settle(cluster.cluster_name)
    plane = control_plane_inputs(mock_runtime)
    assert plane["inputs"]["endpointPublicAccess"] is True, plane["urn"]
    assert plane["inputs"]["endpointPrivateAccess"] is True, plane["urn"]
    assert plane["inputs"]["publicAccessCidrs"] == ["203.0.113.0/24"], plane["urn"]


def test_secrets_are_encrypted_with_the_clusters_rotating_cmk(mock_runtime):
    cluster = EksGpuCluster("eks", cluster_args())
    key_arn = mock_runtime.settle(cluster.key.arn)
    assert key_arn.startswith(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/")
    plane = control_plane_inputs(mock_runtime)
    assert plane["inputs"]["encryptionConfigKeyArn"] == key_arn, plane["urn"]
    [key] = [r for r in mock_runtime.registered("aws:kms/key:Key") if r["outputs"].get("arn") == key_arn]
    assert key["inputs"]["enableKeyRotation"] is True, key["urn"]
    # The control plane log group exists before the cluster, encrypted with the same key.
    [logs] = mock_runtime.registered("aws:cloudwatch/logGroup:LogGroup")
    assert logs["inputs"]["name"] == "/aws/eks/gpufleet-test/cluster", logs["urn"]
    assert logs["inputs"]["kmsKeyId"] == key_arn, logs["urn"]
    assert set(plane["inputs"]["enabledClusterLogTypes"]) == {"api", "audit", "authenticator",
                                                              "controllerManager", "scheduler"}


def test_api_authentication_with_admin_and_operator_entries_and_no_default_node_group(mock_runtime):
    admin = f"arn:aws:iam::{ACCOUNT}:role/platform-admins"
    operator = f"arn:aws:iam::{ACCOUNT}:role/gpufleet-operator"
    cluster = EksGpuCluster("eks", cluster_args(admin_role_arns=(admin,), operator_role_arn=operator))
    mock_runtime.settle(cluster.cluster_name)
    inputs = control_plane_inputs(mock_runtime)["inputs"]
    assert inputs["authenticationMode"] == "API"
    assert inputs["skipDefaultNodeGroup"] is True
    assert inputs["privateSubnetIds"] == SUBNETS
    entries = inputs["accessEntries"]
    assert entries["admin-0"]["principalArn"] == admin
    assert entries["admin-0"]["accessPolicies"]["admin"]["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
    assert entries["operator"]["principalArn"] == operator
    assert entries["operator"]["kubernetesGroups"] == ["gpufleet-operators"]
    assert "accessPolicies" not in entries["operator"]  # no cluster-wide policy: RBAC grants drain only


def test_managed_addons_and_system_node_group(mock_runtime):
    cluster = EksGpuCluster("eks", cluster_args())
    mock_runtime.settle(cluster.node_role_arn)
    addons = {r["inputs"]["addonName"]: r for r in mock_runtime.registered("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "aws-fsx-csi-driver", "eks-pod-identity-agent"}
    assert {a.name for a in MANAGED_ADDONS} == set(addons)
    for addon in addons.values():
        assert addon["inputs"]["clusterName"] == "gpufleet-test", addon["urn"]
    # The FSx CSI node daemon must reach the tainted GPU nodes.
    fsx_config = json.loads(addons["aws-fsx-csi-driver"]["inputs"]["configurationValues"])
    assert fsx_config["node"]["tolerateAllTaints"] is True
    [system] = mock_runtime.registered("aws:eks/nodeGroup:NodeGroup")
    assert system["inputs"]["labels"] == {eks_scheduling.SYSTEM_LABEL: "true"}, system["urn"]
    assert "taints" not in system["inputs"], system["urn"]
    assert "scalingConfig.desiredSize" in system["ignore_changes"], system["urn"]
    [template] = mock_runtime.registered("aws:ec2/launchTemplate:LaunchTemplate")
    ebs = template["inputs"]["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"].startswith("arn:aws:kms:"), template["urn"]
    assert template["inputs"]["metadataOptions"]["httpTokens"] == "required", template["urn"]


def test_node_role_has_the_worker_policies_and_no_ssm_in_a_phi_account(mock_runtime):
    EksGpuCluster("eks", cluster_args(holds_phi=True))
    attached = {r["inputs"]["policyArn"].rsplit("/", 1)[1]
                for r in mock_runtime.registered("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy"} <= attached
    assert "AmazonSSMManagedInstanceCore" not in attached


def test_gpu_node_group_is_labelled_tainted_bounded_and_leaves_desired_size_alone(mock_runtime):
    group = EksGpuNodeGroup("train-h100", node_group_args())

    def check(values):
        urn, labels, taints, scaling, ami = values
        assert labels == {"gpufleet.io/pool": "training", "gpufleet.io/capacity-pool": "h100-use1-az4",
                          "gpufleet.io/node-group": "train-h100"}, urn
        # Registered held: the gate's hold first, then the GPU taint.
        assert [(t["key"], t["value"], t["effect"]) for t in taints] == [
            ("gpufleet.io/unverified", "true", "NO_SCHEDULE"), ("nvidia.com/gpu", "present", "NO_SCHEDULE")], urn
        assert (scaling["min_size"], scaling["max_size"], scaling["desired_size"]) == (0, 8, 5), urn
        assert ami == "AL2023_x86_64_NVIDIA", urn
        return True

    node_group = group.node_group
    assert mock_runtime.settle(pulumi.Output.all(
        node_group.urn, node_group.labels, node_group.taints, node_group.scaling_config, node_group.ami_type,
    ).apply(check))
    [registration] = mock_runtime.registered("aws:eks/nodeGroup:NodeGroup")
    assert registration["ignore_changes"] == ("scalingConfig.desiredSize",), registration["urn"]
    assert registration["inputs"]["launchTemplate"] == {"id": "lt-0123", "version": "1"}
    assert registration["inputs"]["subnetIds"] == ["subnet-0aaa"]
    assert registration["inputs"]["capacityType"] == "ON_DEMAND"


def test_gpu_node_group_exports_the_asg_eks_made(mock_runtime):
    group = EksGpuNodeGroup("serve-h100", node_group_args(pool_role=Role.INFERENCE, pool_kind="capacity-block"))
    asg, tags = mock_runtime.settle(pulumi.Output.all(group.asg_name, group.asg_tags))
    [registration] = mock_runtime.registered("aws:eks/nodeGroup:NodeGroup")
    assert asg == registration["outputs"]["resources"][0]["autoscalingGroups"][0]["name"]
    # Named after the stack file's group, so the operator role's eks:nodegroup-name condition names it.
    assert registration["inputs"]["nodeGroupName"] == "serve-h100" and asg.startswith("eks-serve-h100-")
    assert registration["inputs"]["capacityType"] == "CAPACITY_BLOCK"
    # The tags EKS puts on the group it creates (not the node group's own tags: EKS does not copy those).
    assert tags == {"eks:cluster-name": "gpufleet-test", "eks:nodegroup-name": registration["outputs"]["nodeGroupName"],
                    "k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/gpufleet-test": "owned",
                    "kubernetes.io/cluster/gpufleet-test": "owned"}


def test_asg_name_of_refuses_a_node_group_without_an_asg():
    assert asg_name_of([{"autoscalingGroups": [{"name": "eks-a-1"}]}]) == "eks-a-1"
    with pytest.raises(ValueError, match="no Auto Scaling group"):
        asg_name_of([{"autoscalingGroups": []}])


@pytest.mark.parametrize(("overrides", "field"), [
    ({"holds_phi": True, "public_access_cidrs": ("203.0.113.0/24",)}, "public_access_cidrs"),
    ({"public_access_cidrs": ("0.0.0.0/0",)}, "public_access_cidrs"),
    ({"public_access_cidrs": ("not-a-cidr",)}, "public_access_cidrs"),
    ({"subnet_ids": ["subnet-0aaa"]}, "subnet_ids"),
    ({"admin_role_arns": ("arn:aws:iam::999999999999:role/x",)}, "admin_role_arns"),
    ({"cluster_name": "9lives"}, "cluster_name"),
])
def test_cluster_args_reject_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        cluster_args(**overrides)


# -- the rendered stacks -----------------------------------------------------------------------

def _releases(stack) -> dict[str, dict]:
    return {r.inputs["name"]: r for r in stack.of_type("kubernetes:helm.sh/v3:Release")}


def test_inference_stack_runs_its_gpu_group_on_a_private_eks_cluster(rendered_fleet):
    stack = rendered_fleet["inference"]
    [plane] = stack.of_type("eks:index:Cluster")
    assert stack.spec.holds_phi
    assert plane.inputs["endpointPublicAccess"] is False, plane.urn
    gpu_groups = [g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup") if "taints" in g.inputs]
    assert [g.inputs["labels"]["gpufleet.io/pool"] for g in gpu_groups] == ["inference"]
    [export] = stack.exports["nodeGroups"]
    assert export["orchestrator"] == "eks"
    assert export["asgName"] == gpu_groups[0].outputs["resources"][0]["autoscalingGroups"][0]["name"]
    assert stack.exports["cluster"]["endpointAccess"] == "private"


def test_eks_launch_templates_carry_the_cluster_security_group_and_the_platforms_node_image(rendered_fleet):
    stack = rendered_fleet["inference"]
    [plane] = stack.of_type("eks:index:Cluster")
    cluster_sg = plane.outputs["nodeSecurityGroupId"]
    [template] = [t for t in stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")
                  if t.inputs.get("instanceType") == "p5.48xlarge"]
    [image] = [i for i in rendered_fleet["platform"].exports["nodeImages"] if i["kind"] == "eks"]
    # An ami- id resolved at deploy time (resolve:ssm: fails with a root block device), so a custom
    # AMI group: EKS picks no AMI type and merges no user data.
    assert template.inputs["imageId"] == image["amiId"] and image["amiId"].startswith("ami-"), template.urn
    [group] = [g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup") if g.name == "serve-h100-nodes"]
    assert not group.inputs.get("amiType"), group.urn
    assert template.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1, template.urn
    interfaces = template.inputs["networkInterfaces"]
    assert len(interfaces) == 32
    for interface in interfaces:
        assert cluster_sg in interface["securityGroups"], template.urn
        assert len(interface["securityGroups"]) == 2, template.urn  # EFA group + cluster group


def test_gpu_node_agents_tolerate_every_taint_the_node_groups_carry(rendered_fleet):
    """Device plugins and dcgm-exporter run on held nodes too (the gate's probe needs the GPUs
    advertised); workloads (Kueue flavors) tolerate the GPU taint but never the hold."""
    stack = rendered_fleet["inference"]
    [gpu_group] = [g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup") if "taints" in g.inputs]
    taints = gpu_group.inputs["taints"]
    assert {t["key"] for t in taints} == {"nvidia.com/gpu", "gpufleet.io/unverified"}, gpu_group.urn
    releases = _releases(stack)
    for chart in (NVIDIA_DEVICE_PLUGIN, EFA_DEVICE_PLUGIN, DCGM_EXPORTER):
        release = releases[chart.name]
        assert release.inputs["version"] == chart.version, release.urn
        tolerations = release.inputs["values"]["tolerations"]
        for taint in taints:
            assert any(t["key"] == taint["key"] and t["operator"] == "Exists"
                       and t["effect"] == eks_scheduling.KUBERNETES_EFFECT[taint["effect"]]
                       for t in tolerations), (release.urn, taint["key"])
        terms = release.inputs["values"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["key"] == "gpufleet.io/pool", release.urn
    provider = [r for r in stack.resources if r.type == "pulumi:providers:kubernetes"]
    assert len(provider) == 1 and provider[0].inputs["kubeconfig"], "the k8s provider is built from the kubeconfig"
    for release in releases.values():
        assert release.provider == provider[0].urn, release.urn


def test_training_on_eks_mounts_its_fsx_file_system_through_a_static_volume(training_on_eks):
    stack = training_on_eks["training"]
    assert stack.spec.cluster_kind is ClusterKind.EKS
    storage = stack.exports["storage"]
    [pv] = stack.of_type("kubernetes:core/v1:PersistentVolume")
    csi = pv.inputs["spec"]["csi"]
    assert csi["driver"] == "fsx.csi.aws.com", pv.urn
    assert csi["volumeHandle"] == storage["fileSystemId"], pv.urn
    assert csi["volumeAttributes"] == {"dnsname": storage["dnsName"], "mountname": storage["mountName"]}, pv.urn
    assert pv.inputs["spec"]["capacity"]["storage"] == "4800Gi"
    [pvc] = stack.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert pvc.inputs["spec"]["volumeName"] == pv.inputs["metadata"]["name"], pvc.urn
    assert pvc.inputs["spec"]["storageClassName"] == "", pvc.urn  # static: no provisioner may take it


def test_training_on_eks_has_gpu_node_groups_and_a_kueue_queue_per_group(training_on_eks):
    stack = training_on_eks["training"]
    groups = {g.inputs["labels"]["gpufleet.io/node-group"]: g for g in stack.of_type("aws:eks/nodeGroup:NodeGroup")
              if "taints" in g.inputs}
    assert set(groups) == {"train-h100", "train-h200"}
    for name, group in groups.items():
        assert group.inputs["labels"]["gpufleet.io/pool"] == "training", group.urn
        assert group.inputs["labels"]["gpufleet.io/capacity-pool"] == f"h{name[-3:]}-use1-az{4 if name.endswith('100') else 6}"
        assert group.ignore_changes == ("scalingConfig.desiredSize",), group.urn
    queues = {q.inputs["metadata"]["name"]: q for q in stack.of_type("kubernetes:kueue.x-k8s.io/v1beta1:ClusterQueue")}
    assert set(queues) == {"train-h100", "train-h200"}
    quota = queues["train-h100"].inputs["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert quota == {"name": "nvidia.com/gpu", "nominalQuota": 8 * 8}  # maxNodes 8 x 8 GPUs
    assert {g["orchestrator"] for g in stack.exports["nodeGroups"]} == {"eks"}
    # Not PHI: the public endpoint opens, to the configured CIDRs only.
    [plane] = stack.of_type("eks:index:Cluster")
    assert plane.inputs["endpointPublicAccess"] is True, plane.urn
    assert plane.inputs["publicAccessCidrs"] == ["203.0.113.0/24"], plane.urn
    assert stack.exports["cluster"]["endpointAccess"] == "public+private"


@pytest.mark.parametrize(("changes", "problem"), [
    ({"gpufleet:eksPublicAccessCidrs": ["203.0.113.0/24"]}, "holds PHI"),
    ({"gpufleet:eksPublicAccessCidrs": ["0.0.0.0/0"], "gpufleet:holdsPhi": False}, "whole internet"),
    ({"gpufleet:eksPublicAccessCidrs": ["10.0.0.0/33"], "gpufleet:holdsPhi": False}, "not a CIDR"),
])
def test_stack_file_public_endpoint_cidrs_are_checked(tmp_path, changes, problem):
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.inference.yaml").read_text())
    doc["config"].update(changes)
    path = tmp_path / "Pulumi.inference.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(stackfile.ConfigError) as err:
        stackfile.load_stack(path)
    assert problem in str(err.value) and "gpufleet:eksPublicAccessCidrs" in str(err.value)
    assert str(path) in str(err.value)


def test_stack_file_public_endpoint_cidrs_need_an_eks_cluster(tmp_path):
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.training.yaml").read_text())
    doc["config"]["gpufleet:eksPublicAccessCidrs"] = ["203.0.113.0/24"]
    path = tmp_path / "Pulumi.training.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(stackfile.ConfigError, match="only an eks cluster"):
        stackfile.load_stack(path)


def test_eks_collector_remote_writes_to_the_platform_through_pod_identity(rendered_fleet):
    platform = rendered_fleet["platform"].exports["monitoring"]
    stack = rendered_fleet["inference"]
    [prometheus] = [r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "prometheus"]
    config = prometheus.inputs["values"]["serverFiles"]["prometheus.yml"]
    [remote] = config["remote_write"]
    assert remote["url"] == platform["remoteWriteUrl"], prometheus.urn
    assert remote["sigv4"]["role_arn"] == platform["remoteWriteRoleArn"], prometheus.urn
    assert config["global"]["external_labels"] == {"account": "333333333333", "stack": "inference"}
    account = prometheus.inputs["values"]["serviceAccounts"]["server"]["name"]
    [association] = stack.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        prometheus.inputs["namespace"], account), association.urn
    assert association.inputs["roleArn"] == stack.exports["metrics"]["collectorRoleArn"], association.urn
    assert association.inputs["clusterName"] == stack.exports["cluster"]["name"], association.urn


def test_every_resource_an_eks_job_requests_is_covered_by_its_queue(training_on_eks):
    """Kueue leaves a workload pending when its ClusterQueue does not cover a resource it requests:
    before the fix the queues covered nvidia.com/gpu only, and the Job (which requests EFA) never ran."""
    from gpufleet.automation.jobs.k8s import QUEUE_LABEL, render_manifests
    from gpufleet.automation.jobs.spec import load_job

    stack = training_on_eks["training"]
    job = render_manifests(load_job(REPO / "examples/gpt-reference.eks.yaml"))[1]
    queue = job["metadata"]["labels"][QUEUE_LABEL]
    local = {(q.inputs["metadata"]["namespace"], q.inputs["metadata"]["name"]): q
             for q in stack.of_type("kubernetes:kueue.x-k8s.io/v1beta1:LocalQueue")}
    assert (job["metadata"]["namespace"], queue) in local, sorted(local)
    cluster_queue = local[(job["metadata"]["namespace"], queue)].inputs["spec"]["clusterQueue"]
    [cq] = [q for q in stack.of_type("kubernetes:kueue.x-k8s.io/v1beta1:ClusterQueue")
            if q.inputs["metadata"]["name"] == cluster_queue]
    [group] = cq.inputs["spec"]["resourceGroups"]
    requested = set(job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"])
    assert requested == {"nvidia.com/gpu", "vpc.amazonaws.com/efa"}
    assert requested <= set(group["coveredResources"]), cq.urn
    quotas = {r["name"]: r["nominalQuota"] for r in group["flavors"][0]["resources"]}
    assert quotas == {"nvidia.com/gpu": 8 * 8, "vpc.amazonaws.com/efa": 8 * 32}, cq.urn  # maxNodes 8, p5: 32 EFA

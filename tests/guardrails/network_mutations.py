"""Seeded misconfigurations of issue 11 part A (node launch, names matched by IAM, reachability,
image origin), added to the mutation suite in test_guardrail_mutations.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardrail_fleet import Mutation

LT = "aws:ec2/launchTemplate:LaunchTemplate"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GRAPH = "rendered-graph"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
RELEASE = "kubernetes:helm.sh/v3:Release"


def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``a.b.0.c`` in the inputs (numbers index lists); value None deletes the key."""
    def edit(inputs: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        obj: Any = inputs
        for part in parents:
            obj = obj[int(part)] if part.isdigit() else obj[part]
        if value is None:
            obj.pop(last, None)
        else:
            obj[int(last) if last.isdigit() else last] = value
    return edit


NETWORK_MUTATIONS = [
    Mutation("inference-pods-reach-node-credentials", "ec2.imds-hop-limit", GRAPH,
             lambda f: f.edit("inference", LT, put("metadataOptions.httpPutResponseHopLimit", 2), "serve-h100")),
    Mutation("eks-gpu-node-root-as-ubuntu", "ec2.root-device-matches-image", GRAPH,
             lambda f: f.edit("inference", LT, put("blockDeviceMappings.0.deviceName", "/dev/sda1"), "serve-h100")),
    Mutation("slurm-node-root-as-amazon-linux", "ec2.root-device-matches-image", GRAPH,
             lambda f: f.edit("training", LT, put("blockDeviceMappings.0.deviceName", "/dev/xvda"), "train-h100")),
    Mutation("eks-node-group-auto-named", "iam.conditions-match-node-groups", GRAPH,
             lambda f: f.edit("inference", EKS_NODE_GROUP, put("nodeGroupName", None), "serve-h100")),
    Mutation("eks-node-group-named-otherwise", "iam.conditions-match-node-groups", GRAPH,
             lambda f: f.edit("inference", EKS_NODE_GROUP, put("nodeGroupName", "serve-h100-nodes"), "serve-h100")),
    Mutation("phi-vpc-without-eks-auth-endpoint", "vpc.endpoints-without-nat", GRAPH,
             lambda f: f.drop("inference", ENDPOINT, "network-eks-auth")),
    Mutation("phi-vpc-without-ec2-endpoint", "vpc.endpoints-without-nat", GRAPH,
             lambda f: f.drop("inference", ENDPOINT, "network-ec2")),
    Mutation("phi-nodes-get-session-manager", "vpc.endpoints-without-nat", GRAPH,
             lambda f: f.add("inference", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "nodes-ssm",
                             {"role": "nodes", "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"})),
    # Image Builder's instances run in the default VPC unless the configuration names a subnet: in
    # the platform VPC (no NAT) their SSM agent needs the SSM endpoints.
    Mutation("image-builder-in-the-platform-vpc", "vpc.endpoints-without-nat", GRAPH,
             lambda f: f.edit("platform", "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration",
                              put("subnetId", "subnet-0platform"))),
    Mutation("phi-device-plugin-image-from-nvcr", "images.phi-from-ecr", GRAPH,
             lambda f: f.edit("inference", RELEASE, put("values.image.repository", "nvcr.io/nvidia/k8s-device-plugin"),
                              "nvidia-device-plugin")),
    Mutation("phi-chart-from-github-pages", "images.phi-from-ecr", GRAPH,
             lambda f: f.edit("inference", RELEASE, put("repositoryOpts", {"repo": "https://nvidia.github.io/dcgm-exporter/helm-charts"}),
                              "dcgm-exporter")),
    Mutation("phi-subchart-registry-quay", "images.phi-from-ecr", GRAPH,
             lambda f: f.edit("inference", RELEASE, put("values.prometheus-node-exporter.image.registry", "quay.io"),
                              "prometheus")),
    Mutation("phi-pod-image-from-docker-hub", "images.phi-from-ecr", GRAPH,
             lambda f: f.add("inference", "kubernetes:apps/v1:Deployment", "debug",
                             {"metadata": {"name": "debug"}, "spec": {"template": {"spec": {"containers": [
                                 {"name": "debug", "image": "docker.io/library/busybox:1.36"}]}}}})),
]

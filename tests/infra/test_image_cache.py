"""Images and charts inside the private network (issue 11, item 2): the platform's ECR
pull-through cache and chart repositories, the consumers' cross-account pull, and every Helm
release and image of the EKS workloads pointed there."""

from __future__ import annotations

import json

import pytest

from gpufleet.infra import registry_mirror
from gpufleet.infra.eks_workloads import CHARTS
from gpufleet.infra.guardrails.node_rules import image_references

PLATFORM, TRAINING, INFERENCE = "111111111111", "222222222222", "333333333333"
HOST = f"{PLATFORM}.dkr.ecr.us-east-1.amazonaws.com"


def by_name(stack, type_token: str) -> dict:
    return {r.name: r for r in stack.of_type(type_token)}


def test_the_platform_caches_the_four_registries_with_the_nvcr_login_under_its_cmk(rendered_fleet):
    stack = rendered_fleet["platform"]
    rules = {r.inputs["upstreamRegistryUrl"]: r for r in stack.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")}
    assert set(rules) == {"registry.k8s.io", "quay.io", "public.ecr.aws", "nvcr.io"}
    [secret] = stack.of_type("aws:secretsmanager/secret:Secret")
    assert secret.inputs["name"] == "ecr-pullthroughcache/nvcr", secret.urn
    assert rules["nvcr.io"].inputs["credentialArn"] == secret.outputs["arn"]
    assert all("credentialArn" not in r.inputs for u, r in rules.items() if u != "nvcr.io")
    [key] = [k for k in stack.of_type("aws:kms/key:Key") if k.name == "image-cache-key"]
    assert key.inputs["enableKeyRotation"] is True
    assert secret.inputs["kmsKeyId"] == key.outputs["arn"]
    templates = {t.inputs["prefix"]: t for t in stack.of_type(
        "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate")}
    assert set(templates) == {r.inputs["ecrRepositoryPrefix"] for r in rules.values()}
    for template in templates.values():
        assert template.inputs["appliedFors"] == ["PULL_THROUGH_CACHE"], template.urn
        assert template.inputs["encryptionConfigurations"] == [
            {"encryptionType": "KMS", "kmsKey": key.outputs["arn"]}], template.urn
        [pull] = json.loads(template.inputs["repositoryPolicy"])["Statement"]
        assert sorted(pull["Principal"]["AWS"]) == [f"arn:aws:iam::{a}:root" for a in (TRAINING, INFERENCE)]
        assert set(pull["Action"]) == {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                       "ecr:BatchCheckLayerAvailability"}


def test_consumers_may_fill_the_cache_and_pull_the_mirrored_charts(rendered_fleet):
    stack = rendered_fleet["platform"]
    [registry] = stack.of_type("aws:ecr/registryPolicy:RegistryPolicy")
    [fill] = json.loads(registry.inputs["policy"])["Statement"]
    assert set(fill["Action"]) == {"ecr:CreateRepository", "ecr:BatchImportUpstreamImage"}
    assert sorted(fill["Resource"]) == sorted(
        f"arn:aws:ecr:us-east-1:{PLATFORM}:repository/{u.prefix}/*" for u in registry_mirror.UPSTREAMS)
    repositories = {r.inputs["name"] for r in stack.of_type("aws:ecr/repository:Repository")}
    assert repositories == {f"charts/{c}" for c in registry_mirror.MIRRORED_CHARTS}
    assert {c.short_name for c in CHARTS} == set(registry_mirror.MIRRORED_CHARTS)


def test_every_release_and_image_of_the_phi_cluster_comes_from_the_platforms_ecr(rendered_fleet):
    stack = rendered_fleet["inference"]
    releases = stack.of_type("kubernetes:helm.sh/v3:Release")
    assert {r.inputs["name"] for r in releases} == {"nvidia-device-plugin", "aws-efa-k8s-device-plugin",
                                                   "dcgm-exporter", "prometheus"}
    pins = {c.short_name: c for c in CHARTS}
    for release in releases:
        name = release.inputs["name"]
        assert release.inputs["chart"] == f"oci://{HOST}/charts/{name}", release.urn
        assert release.inputs["version"] == pins[name].version, release.urn
        assert "repositoryOpts" not in release.inputs, release.urn
        references = list(image_references(release.inputs["values"]))
        assert len(references) == len(pins[name].images), (release.urn, references)
        for path, reference in references:
            assert reference.startswith(f"{HOST}/"), (release.urn, path, reference)
            assert registry_mirror.is_ecr(reference)


def test_cached_image_refuses_an_uncached_registry_and_splits_registry_blocks():
    assert registry_mirror.cached_image("quay.io/prometheus/prometheus", HOST) == f"{HOST}/quay/prometheus/prometheus"
    with pytest.raises(ValueError, match="docker.io"):
        registry_mirror.cached_image("docker.io/library/busybox", HOST)
    split = registry_mirror.ImageValue(path="a.image", upstream="quay.io/prometheus/node-exporter", split=True)
    assert split.values(HOST) == {"a": {"image": {"registry": f"{HOST}/quay", "repository": "prometheus/node-exporter"}}}
    assert not registry_mirror.is_ecr("nvcr.io/nvidia/k8s-device-plugin")
    assert registry_mirror.is_ecr(f"oci://{HOST}/charts/kueue")

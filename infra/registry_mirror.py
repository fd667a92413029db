"""Where container images and Helm charts come from: the platform account's ECR, never the
internet. Pure: no pulumi import.

Images come through ECR pull-through cache rules (``<registry>/<prefix>/<upstream path>``); charts
are OCI artifacts in the platform's ``charts/`` repositories (mirrored with ``helm push``, see
docs/eks.md). Consumers pull both cross-account, through their VPC's ECR endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHART_PREFIX", "MIRRORED_CHARTS", "UPSTREAMS", "ImageValue", "Upstream", "cached_image", "chart_ref", "is_ecr",
           "registry_host"]


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """A public registry cached by a pull-through cache rule."""

    registry: str
    """Upstream registry host."""
    prefix: str
    """ECR repository prefix of its cached repositories."""
    needs_credential: bool = False
    """The upstream requires a login (a Secrets Manager secret named ``ecr-pullthroughcache/<prefix>``)."""


UPSTREAMS = (
    Upstream(registry="registry.k8s.io", prefix="registry-k8s-io"),
    Upstream(registry="quay.io", prefix="quay"),
    Upstream(registry="public.ecr.aws", prefix="ecr-public"),
    Upstream(registry="nvcr.io", prefix="nvcr", needs_credential=True),
)
CHART_PREFIX = "charts"
"""ECR repositories holding the pinned Helm charts as OCI artifacts."""
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?(/|$)")


def registry_host(account_id: str, region: str) -> str:
    """The private registry of an account in a region."""
    suffix = ".cn" if region.startswith("cn-") else ""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com{suffix}"


def cached_image(upstream_image: str, host: str) -> str:
    """``nvcr.io/nvidia/k8s-device-plugin`` -> ``<host>/nvcr/nvidia/k8s-device-plugin``."""
    registry, _, path = upstream_image.partition("/")
    for upstream in UPSTREAMS:
        if upstream.registry == registry and path:
            return f"{host}/{upstream.prefix}/{path}"
    raise ValueError(f"image {upstream_image!r} is not from a cached registry "
                     f"({', '.join(u.registry for u in UPSTREAMS)})")


def chart_ref(chart: str, host: str) -> str:
    """The OCI reference of a mirrored chart."""
    return f"oci://{host}/{CHART_PREFIX}/{chart}"


def is_ecr(reference: str) -> bool:
    """An image or chart reference in a private ECR registry (``oci://`` allowed)."""
    return bool(ECR_HOST.match(reference.removeprefix("oci://")))


MIRRORED_CHARTS = ("nvidia-device-plugin", "aws-efa-k8s-device-plugin", "dcgm-exporter", "prometheus", "kueue")
"""Charts the platform holds under ``charts/`` (pushed with ``helm push``); the EKS workloads
install only these."""


@dataclass(frozen=True, kw_only=True)
class ImageValue:
    """Where a chart's values name one of its images, and the upstream image it defaults to."""

    path: str
    """Dotted path of the image block in the chart's values (``image``, ``server.image``)."""
    upstream: str
    """The image the chart pulls by default, without tag (the chart's appVersion supplies it)."""
    split: bool = False
    """The chart takes ``registry`` and ``repository`` separately (bitnami-style subcharts)."""

    def values(self, host: str) -> dict[str, object]:
        """The values that point this image at the cache."""
        cached = cached_image(self.upstream, host)
        leaf: dict[str, object]
        if self.split:
            registry, _, repository = cached.partition("/")
            prefix, _, repository = repository.partition("/")
            leaf = {"registry": f"{registry}/{prefix}", "repository": repository}
        else:
            leaf = {"repository": cached}
        for part in reversed(self.path.split(".")):
            leaf = {part: leaf}
        return leaf

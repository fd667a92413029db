"""User data of an EKS node on Amazon Linux 2023: a MIME multipart document with two parts.

1. ``application/node.eks.aws``: nodeadm's ``NodeConfig`` (apiVersion ``node.eks.aws/v1alpha1``):
   the cluster's name, API endpoint, CA and service CIDR, and the kubelet flags that register the
   node with its labels and taints. On AL2023, nodeadm-config reads it before cloud-init's scripts
   and nodeadm-run starts the kubelet after them, so the node registers (held) whatever the script
   part does.
2. ``text/x-shellscript``: the gpufleet bootstrap (``user_data.render_user_data``): fetch the bundle,
   run on_create's steps (EFA check, NCCL environment, exporters, the boot health gate).

Pure: no pulumi import, no I/O. The node group is a custom-AMI group (the gpufleet node image), so
EKS merges nothing into this user data: the NodeConfig must be complete.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.mime.multipart import MIMEMultipart

from gpufleet.lifecycle.bootstrap.user_data import UserDataParams, render_user_data

BOUNDARY = "==GPUFLEET-NODE=="
"""Fixed, so the rendered user data (and the launch template version) only changes with its content."""
NODECONFIG_TYPE = "application/node.eks.aws"
TAINT = re.compile(r"^[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$")
LABEL_KEY = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9._-]{1,63}$")


@dataclass(frozen=True, kw_only=True)
class EksClusterParams:
    """What nodeadm needs to join a cluster without calling DescribeCluster (the PHI account's
    nodes reach EKS only through its endpoints, and nodeadm would otherwise look these up)."""

    name: str
    """Cluster name."""
    api_server_endpoint: str
    """``https://...`` endpoint of the Kubernetes API."""
    certificate_authority: str
    """The cluster CA bundle, base64 (as EKS and kubeconfig carry it)."""
    service_cidr: str
    """Kubernetes service CIDR (the cluster's ``kubernetes_service_ip_address_range``)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("EksClusterParams.name: must be non-empty")
        if not self.api_server_endpoint.startswith("https://"):
            raise ValueError(f"EksClusterParams.api_server_endpoint={self.api_server_endpoint!r}: must be https://")
        if not re.fullmatch(r"[A-Za-z0-9+/=]+", self.certificate_authority):
            raise ValueError("EksClusterParams.certificate_authority: must be base64")
        try:
            ipaddress.ip_network(self.service_cidr)
        except ValueError:
            raise ValueError(f"EksClusterParams.service_cidr={self.service_cidr!r}: not a CIDR block") from None


def render_node_config(cluster: EksClusterParams, labels: Mapping[str, str], taints: Sequence[str]) -> str:
    """The NodeConfig document. Scalars are JSON-quoted (valid YAML, no quoting surprises)."""
    for key in labels:
        if not LABEL_KEY.match(key):
            raise ValueError(f"node label {key!r}: not a Kubernetes label key")
    for taint in taints:
        if not TAINT.match(taint):
            raise ValueError(f"taint {taint!r}: expected key=value:Effect (NoSchedule, PreferNoSchedule, NoExecute)")
    q = json.dumps
    lines = [
        "---",
        "apiVersion: node.eks.aws/v1alpha1",
        "kind: NodeConfig",
        "spec:",
        "  cluster:",
        f"    name: {q(cluster.name)}",
        f"    apiServerEndpoint: {q(cluster.api_server_endpoint)}",
        f"    certificateAuthority: {q(cluster.certificate_authority)}",
        f"    cidr: {q(cluster.service_cidr)}",
        "  kubelet:",
        "    flags:",
    ]
    if labels:
        lines.append(f"      - {q('--node-labels=' + ','.join(f'{k}={v}' for k, v in sorted(labels.items())))}")
    if taints:
        # Registering with the taints (not adding them later) is what keeps pods off before the gate.
        lines.append(f"      - {q('--register-with-taints=' + ','.join(taints))}")
    return "\n".join(lines) + "\n"


def render_eks_user_data(cluster: EksClusterParams, bootstrap: UserDataParams, *,
                         labels: Mapping[str, str], taints: Sequence[str]) -> str:
    """The MIME multipart user data: NodeConfig first, then the gpufleet bootstrap script."""
    document = MIMEMultipart("mixed", boundary=BOUNDARY)
    for content_type, text in ((NODECONFIG_TYPE, render_node_config(cluster, labels, taints)),
                               ("text/x-shellscript", render_user_data(bootstrap))):
        if BOUNDARY in text:
            raise ValueError(f"{content_type} part contains the MIME boundary {BOUNDARY!r}")
        part = Message()
        part["Content-Type"] = f'{content_type}; charset="us-ascii"'
        part.set_payload(text)
        document.attach(part)
    return document.as_string()

"""The healer Deployment's ClusterRole (infra/eks_healer.py) is exactly what the EKS heal path
calls: a replacement (cordon, evict, hold, lift) against the Kubernetes fake, its requests mapped
to (API group, resource, verb) as the API server's authorizer sees them."""

from __future__ import annotations

import re

from gpufleet.automation.heal.kube_service import default_kube, request_replace
from gpufleet.infra.eks_healer import CLUSTER_RULES

ROUTES = [
    ("GET", r"/api/v1/nodes", ("", "nodes", "list")),
    ("GET", r"/api/v1/nodes/[^/]+", ("", "nodes", "get")),
    ("PATCH", r"/api/v1/nodes/[^/]+", ("", "nodes", "patch")),
    ("GET", r"/api/v1/pods", ("", "pods", "list")),
    ("GET", r"/api/v1/namespaces/[^/]+/pods", ("", "pods", "list")),
    ("GET", r"/api/v1/namespaces/[^/]+/pods/[^/]+", ("", "pods", "get")),
    ("DELETE", r"/api/v1/namespaces/[^/]+/pods/[^/]+", ("", "pods", "delete")),
    ("POST", r"/api/v1/namespaces/[^/]+/pods/[^/]+/eviction", ("", "pods/eviction", "create")),
]


def authorized_as(method: str, path: str) -> tuple[str, str, str]:
    for verb, pattern, what in ROUTES:
        if method == verb and re.fullmatch(pattern, path):
            return what
    raise AssertionError(f"{method} {path}: a call the healer's RBAC does not describe")


def used_by(eks, start: int) -> set[tuple[str, str, str]]:
    return {authorized_as(m, p) for m, p in eks.kube.requests[start:]}


GRANTED = {(group, resource, verb) for group, resource, verbs in CLUSTER_RULES for verb in verbs}


def test_a_requested_replacement_calls_only_what_the_cluster_role_grants(eks):
    eks.kube.add_pod("train", "worker-0", "node-a", labels={"app": "train"})
    request_replace(default_kube("inference"), "node-a")  # the operator's call, not the healer's
    start = len(eks.kube.requests)
    (op,) = eks.heal().operations
    assert op["state"] == "DONE", op
    assert used_by(eks, start) == GRANTED - {("", "nodes", "get")}  # a node that drains is never read alone


def test_a_lost_nodes_replacement_calls_every_grant_and_nothing_else(eks):
    """NotReady, its evicted pod never confirmed: the drain reads the node to see it is lost."""
    eks.not_ready("node-a", minutes=30)
    eks.kube.add_pod("train", "worker-0", "node-a", labels={"app": "train"})
    start = len(eks.kube.requests)
    (op,) = eks.heal().operations
    assert op["state"] == "DONE", op
    assert used_by(eks, start) == GRANTED

"""The EKS health gate's probe may do on the rendered clusters what it does against the API
(automation/health/kube_probe.py, kube_pair.py): its namespace exists, and the operator group may
create and delete the probe Jobs and the peer all-reduce's Service there and read the pods' logs;
nodes and pods it reads cluster-wide through the operator's ClusterRole."""

from __future__ import annotations

from gpufleet.automation.health.kube_probe import NAMESPACE
from gpufleet.infra.eks_cluster import OPERATOR_GROUP

PROBE_CALLS = {("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("", "services", "create"),
               ("", "services", "delete"), ("", "pods/log", "get")}
"""(API group, resource, verb) of each namespaced call the probe makes (create/delete Job and
Service, read the pod log)."""
CLUSTER_CALLS = {("", "nodes", "list"), ("", "pods", "list")}


def granted(rules) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_the_operator_may_run_the_health_gates_jobs_in_its_namespace(rendered_fleet):
    stack = rendered_fleet["inference"]  # the EKS stack (PHI)
    [namespace] = [n for n in stack.of_type("kubernetes:core/v1:Namespace") if n.inputs["metadata"]["name"] == NAMESPACE]
    [role] = stack.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    assert role.inputs["metadata"]["namespace"] == NAMESPACE
    assert granted(role.inputs["rules"]) >= PROBE_CALLS
    [binding] = stack.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert binding.inputs["metadata"]["namespace"] == NAMESPACE
    assert binding.inputs["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                         "name": role.inputs["metadata"]["name"]}
    assert binding.inputs["subjects"] == [{"kind": "Group", "name": OPERATOR_GROUP,
                                           "apiGroup": "rbac.authorization.k8s.io"}]
    [cluster_role] = stack.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    assert granted(cluster_role.inputs["rules"]) >= CLUSTER_CALLS
    assert namespace.inputs["metadata"] == {"name": NAMESPACE}

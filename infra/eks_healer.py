"""The healer on EKS: ``python -m gpufleet.automation.heal --loop`` as a Deployment of a training
cluster, in ``gpufleet-system``, with its own Pod Identity role, and the ECR repository its image
is pushed to (infra/healer_image.py, docs/heal-eks.md).

The repository is rendered with the cluster; the Deployment once the stack names an image of it
(``gpufleet:healerImage``): a first ``pulumi up`` makes the repository, the image is pushed, the
key is set, and the next ``pulumi up`` starts the healer.

Takes the stack's AWS provider and the cluster's Kubernetes provider through ``opts.providers``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import ecr, eks, iam
from pulumi_kubernetes.apps import v1 as apps
from pulumi_kubernetes.core import v1 as core
from pulumi_kubernetes.meta import v1 as meta
from pulumi_kubernetes.rbac import v1 as rbac

from gpufleet.infra import baseline_policies as policies
from gpufleet.infra import eks_scheduling, healer_image
from gpufleet.infra.encryption_key import EncryptionKey, EncryptionKeyArgs

__all__ = ["CLUSTER_RULES", "EksHealer", "EksHealerArgs", "SERVICE_ACCOUNT"]

NAMESPACE = eks_scheduling.HEALTH_GATE_NAMESPACE
SERVICE_ACCOUNT = "gpufleet-healer"
APP = {"app.kubernetes.io/name": "gpufleet-healer", "app.kubernetes.io/part-of": "gpufleet"}
CLUSTER_RULES = (("", "nodes", ("get", "list", "patch")), ("", "pods", ("list",)),
                 ("", "pods/eviction", ("create",)))
"""(API group, resource, verbs) of every cluster-wide call of the EKS heal path (cordon and hold
are node patches; the drain lists the node's pods and evicts them). The gate's probe Jobs are the
health gate Role's, bound to the healer in its namespace (eks_workloads.py)."""
HEALTH_GATE_ROLE = "gpufleet-health-gate"
INVENTORY_DIR = "/etc/gpufleet"
HEARTBEAT = "/run/healer/heartbeat"
HEARTBEAT_STALE_S = 3600
"""The liveness probe fails on a heartbeat older than this: longer than a pass's longest bounded
wait (a replacement's 1200 s and a newcomer's join 900 s at their defaults), so only a stuck
healer is restarted, never one waiting on a boot."""
INTERVAL_S = 60
KEEP_IMAGES = 20
"""Tagged images the lifecycle policy keeps (rollback room); untagged ones go after a week."""


@dataclass(frozen=True, kw_only=True)
class EksHealerArgs:
    cluster_name: pulumi.Input[str]
    """The EKS cluster (its Pod Identity association and the role's trust name it)."""
    account_id: str
    """This account: the repository's, the role's and the operator role's."""
    region: str
    """The stack's region."""
    assume_role_arns: Sequence[pulumi.Input[str]]
    """What the healer assumes: this account's operator role and the platform's healer journal role
    (slurm_composition.healer_roles, the head's statements)."""
    image: str = ""
    """The healer image (validated by the stack file loader); empty: the repository only."""
    inventory_text: str | None = None
    """The collected inventory the healer reads (``.gpufleet/inventory.json``); None: every pass
    fails naming the missing file until `gpufleet inventory collect` and `pulumi up`."""
    tiers: tuple[str, ...] = ("quick",)
    """Health tiers a newcomer must pass (the stack's healthGate)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What makes the namespace and the health gate's Role (EksGpuWorkloads)."""


def restricted_security_context() -> dict[str, object]:
    """The container's context under the ``restricted`` Pod Security Standard, read-only root."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": healer_image.RUN_AS, "runAsGroup": healer_image.RUN_AS,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def liveness_command() -> list[str]:
    return ["python", "-c",
            f"import os, sys, time; sys.exit(time.time() - os.stat({HEARTBEAT!r}).st_mtime > {HEARTBEAT_STALE_S})"]


def healer_args(tiers: Sequence[str]) -> list[str]:
    """After the image's entry point (``... --loop``): the EKS path as this account's own healer.
    EC2 status checks only: the instance identity may not query the Managed Prometheus."""
    return ["--orchestrator", "eks", "--identity", "instance", "--sources", "ec2",
            "--inventory", f"{INVENTORY_DIR}/inventory.json", "--tiers", ",".join(tiers),
            "--interval", str(INTERVAL_S), "--heartbeat", HEARTBEAT]


def deployment_spec(image: str, args: Sequence[str], region: str) -> dict[str, object]:
    """One replica, Recreate (the pool lease keeps two healers from acting at once anyway; a
    rolling update would only overlap them)."""
    return {
        "replicas": 1,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": dict(APP)},
        "template": {
            "metadata": {"labels": dict(APP)},
            "spec": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "nodeSelector": {eks_scheduling.SYSTEM_LABEL: "true"},
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                # A healer stopped mid-step resumes from its journal; a minute lets it finish a call.
                "terminationGracePeriodSeconds": 60,
                "containers": [{
                    "name": "healer",
                    "image": image,
                    "args": list(args),
                    "env": [{"name": "AWS_REGION", "value": region}],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                  "limits": {"cpu": "1", "memory": "512Mi"}},
                    "securityContext": restricted_security_context(),
                    "livenessProbe": {"exec": {"command": liveness_command()}, "initialDelaySeconds": 60,
                                      "periodSeconds": 60, "timeoutSeconds": 10, "failureThreshold": 3},
                    "volumeMounts": [{"name": "inventory", "mountPath": INVENTORY_DIR, "readOnly": True},
                                     {"name": "run", "mountPath": "/run/healer"},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "inventory", "configMap": {"name": "gpufleet-healer-inventory"}},
                            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            },
        },
    }


def lifecycle_policy() -> dict[str, object]:
    return {"rules": [
        {"rulePriority": 1, "description": "untagged layers of superseded pushes",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                       "countNumber": 7}, "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"keep the last {KEEP_IMAGES} images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
         "action": {"type": "expire"}},
    ]}


class EksHealer(pulumi.ComponentResource):
    """Outputs: ``repository_url``, ``role_arn`` (None without an image)."""

    def __init__(self, name: str, args: EksHealerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:eks:EksHealer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(f"{name}-image-key", EncryptionKeyArgs(
            description="gpufleet healer images (ECR)", account_id=args.account_id, region=args.region), opts=child)
        repository = ecr.Repository(
            f"{name}-repository", name=healer_image.REPOSITORY, image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS",
                                                                                 kms_key=key.arn)],
            opts=child)
        ecr.LifecyclePolicy(f"{name}-repository-lifecycle", repository=repository.name,
                            policy=json.dumps(lifecycle_policy()), opts=child)
        self.repository_url = repository.repository_url
        self.role_arn: pulumi.Output[str] | None = None
        if args.image:
            self._deployment(name, args, child)
        else:
            pulumi.log.warn(f"no {healer_image.REPOSITORY} image named (gpufleet:healerImage): the healer "
                            "Deployment is rendered once one is pushed and named (docs/heal-eks.md)")
        self.register_outputs({"repositoryUrl": self.repository_url, "roleArn": self.role_arn})

    def _deployment(self, name: str, args: EksHealerArgs, child: pulumi.ResourceOptions) -> None:
        role = iam.Role(
            f"{name}-role", name=policies.EKS_HEALER_ROLE_NAME,
            description="gpufleet healer Deployment (Pod Identity): assumes the operator and journal roles only",
            assume_role_policy=pulumi.Output.from_input(args.cluster_name).apply(lambda cluster: json.dumps(
                policies.pod_identity_trust(args.account_id, cluster, NAMESPACE, SERVICE_ACCOUNT))),
            max_session_duration=3600, opts=child)
        iam.RolePolicy(f"{name}-role-policy", role=role.id,
                       policy=pulumi.Output.all(*args.assume_role_arns).apply(
                           lambda arns: json.dumps(policies.head_permissions(arns))), opts=child)
        eks.PodIdentityAssociation(f"{name}-identity", cluster_name=args.cluster_name, namespace=NAMESPACE,
                                   service_account=SERVICE_ACCOUNT, role_arn=role.arn, opts=child)
        self.role_arn = role.arn

        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        labels = dict(APP)
        account = core.ServiceAccount(f"{name}-service-account", metadata=meta.ObjectMetaArgs(
            name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=labels), opts=after)
        cluster_role = rbac.ClusterRole(f"{name}-cluster-role", metadata=meta.ObjectMetaArgs(
            name=SERVICE_ACCOUNT, labels=labels), rules=[
                rbac.PolicyRuleArgs(api_groups=[group], resources=[resource], verbs=list(verbs))
                for group, resource, verbs in CLUSTER_RULES], opts=child)
        subject = rbac.SubjectArgs(kind="ServiceAccount", name=SERVICE_ACCOUNT, namespace=NAMESPACE)
        rbac.ClusterRoleBinding(
            f"{name}-cluster-binding", metadata=meta.ObjectMetaArgs(name=SERVICE_ACCOUNT, labels=labels),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name=SERVICE_ACCOUNT),
            subjects=[subject], opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_role, account]))
        rbac.RoleBinding(
            f"{name}-health-gate-binding", metadata=meta.ObjectMetaArgs(
                name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=labels),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=HEALTH_GATE_ROLE),
            subjects=[subject], opts=pulumi.ResourceOptions(parent=self, depends_on=[account, *args.depends_on]))
        inventory = core.ConfigMap(f"{name}-inventory", metadata=meta.ObjectMetaArgs(
            name="gpufleet-healer-inventory", namespace=NAMESPACE, labels=labels),
            data={"inventory.json": args.inventory_text} if args.inventory_text is not None else {}, opts=after)
        apps.Deployment(f"{name}-deployment", metadata=meta.ObjectMetaArgs(
            name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=labels),
            spec=deployment_spec(args.image, healer_args(args.tiers), args.region),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, inventory]))

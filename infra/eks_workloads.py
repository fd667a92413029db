"""What runs inside an EKS GPU cluster: the NVIDIA and EFA device plugins, dcgm-exporter, the static
FSx for Lustre volume of the training file system, operator RBAC, and Kueue queues per pool.

Takes the cluster's Kubernetes provider through ``opts`` (built in stacks/__main__.py from the
EksGpuCluster's kubeconfig, like every provider).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
from pulumi_kubernetes import apiextensions
from pulumi_kubernetes.core import v1 as core
from pulumi_kubernetes.helm import v3 as helm
from pulumi_kubernetes.meta import v1 as meta
from pulumi_kubernetes.rbac import v1 as rbac

from gpufleet.infra import catalog, eks_scheduling, metrics_agent, registry_mirror
from gpufleet.infra.eks_cluster import OPERATOR_GROUP
from gpufleet.infra.registry_mirror import ImageValue

__all__ = [
    "EksGpuWorkloads",
    "EksGpuWorkloadsArgs",
    "FsxVolume",
    "GpuQueue",
    "HelmChart",
    "MetricsCollector",
]

DCGM_COUNTERS = Path(__file__).resolve().parent.parent / "monitoring" / "dcgm-counters.csv"
"""The DCGM fields dcgm-exporter publishes; the alert rules and the dashboard use only these."""
MONITORING_NAMESPACE = metrics_agent.COLLECTOR_NAMESPACE
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class HelmChart:
    """A pinned Helm chart."""

    name: str
    """Chart name."""
    repo: str
    """Chart repository URL (empty for an OCI chart given by ``name``)."""
    version: str
    """Pinned chart version: upgrades are a reviewed change."""
    namespace: str
    """Namespace of the release."""
    images: tuple[ImageValue, ...] = ()
    """Every image the chart runs: its values point each at the platform's pull-through cache."""

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]


# `repo` is the upstream the chart is mirrored from (helm pull there, helm push to the platform's
# charts/ repositories, docs/eks.md); releases install the mirrored OCI artifact.
NVIDIA_DEVICE_PLUGIN = HelmChart(name="nvidia-device-plugin", repo="https://nvidia.github.io/k8s-device-plugin",
                                 version="0.17.1", namespace="kube-system",
                                 images=(ImageValue(path="image", upstream="nvcr.io/nvidia/k8s-device-plugin"),))
EFA_DEVICE_PLUGIN = HelmChart(name="aws-efa-k8s-device-plugin", repo="https://aws.github.io/eks-charts",
                              version="v0.5.7", namespace="kube-system",
                              images=(ImageValue(path="image", upstream="public.ecr.aws/eks/aws-efa-k8s-device-plugin"),))
DCGM_EXPORTER = HelmChart(name="dcgm-exporter", repo="https://nvidia.github.io/dcgm-exporter/helm-charts",
                          version="4.1.1", namespace=MONITORING_NAMESPACE,
                          images=(ImageValue(path="image", upstream="nvcr.io/nvidia/k8s/dcgm-exporter"),))
PROMETHEUS = HelmChart(name="prometheus", repo="https://prometheus-community.github.io/helm-charts",
                      version="25.27.0", namespace=MONITORING_NAMESPACE, images=(
                          ImageValue(path="server.image", upstream="quay.io/prometheus/prometheus"),
                          ImageValue(path="configmapReload.prometheus.image",
                                     upstream="quay.io/prometheus-operator/prometheus-config-reloader"),
                          ImageValue(path="kube-state-metrics.image",
                                     upstream="registry.k8s.io/kube-state-metrics/kube-state-metrics", split=True),
                          ImageValue(path="prometheus-node-exporter.image", upstream="quay.io/prometheus/node-exporter",
                                     split=True)))
KUEUE = HelmChart(name="oci://registry.k8s.io/kueue/charts/kueue", repo="", version="0.13.4",
                  namespace="kueue-system",
                  images=(ImageValue(path="controllerManager.manager.image", upstream="registry.k8s.io/kueue/kueue"),))
CHARTS = (NVIDIA_DEVICE_PLUGIN, EFA_DEVICE_PLUGIN, DCGM_EXPORTER, PROMETHEUS, KUEUE)
KUEUE_API = "kueue.x-k8s.io/v1beta1"


@dataclass(frozen=True, kw_only=True)
class FsxVolume:
    """A static PersistentVolume + claim for an existing FSx for Lustre file system."""

    file_system_id: pulumi.Input[str]
    """fs-... id (the volume handle)."""
    dns_name: pulumi.Input[str]
    """File system DNS name."""
    mount_name: pulumi.Input[str]
    """Lustre mount name."""
    capacity_gib: int
    """Storage capacity, for the volume's declared size."""
    namespace: str = "training"
    """Namespace of the claim (where training jobs run)."""
    claim_name: str = "fsx-datasets"
    """Name of the claim pods mount."""


@dataclass(frozen=True, kw_only=True)
class GpuQueue:
    """A Kueue ClusterQueue for one GPU node group."""

    node_group: str
    """Node group name (the flavor selects its nodes)."""
    instance_type: str
    """Instance type of the group, for its GPU count."""
    max_nodes: int
    """The group's upper bound: the queue's nominal quota is max_nodes x GPUs per node."""

    @property
    def nominal_gpus(self) -> int:
        return self.max_nodes * catalog.lookup(self.instance_type).gpus

    @property
    def nominal_efa(self) -> int:
        """EFA interfaces (``vpc.amazonaws.com/efa``) of max_nodes nodes; 0 without EFA."""
        return self.max_nodes * catalog.lookup(self.instance_type).efa_interfaces

    def quotas(self) -> dict[str, int]:
        """Every extended resource a job on this group requests -> the queue's nominal quota.

        Kueue leaves a workload pending when it requests a resource its ClusterQueue does not cover.
        """
        return {eks_scheduling.GPU_RESOURCE: self.nominal_gpus, eks_scheduling.EFA_RESOURCE: self.nominal_efa}


@dataclass(frozen=True, kw_only=True)
class MetricsCollector:
    """The in-cluster Prometheus that scrapes the exporters and remote-writes to the platform."""

    account_id: str
    """This account (external label ``account``)."""
    stack: str
    """This stack (external label ``stack``)."""
    region: str
    """Region of the platform's workspace."""
    remote_write_url: pulumi.Input[str]
    """The platform's workspace remote-write URL."""
    remote_write_role_arn: pulumi.Input[str]
    """The platform's remote-write role, assumed from the collector role (Pod Identity)."""


@dataclass(frozen=True, kw_only=True)
class EksGpuWorkloadsArgs:
    pool_role: str
    """``training`` or ``inference``."""
    fsx_volume: FsxVolume | None = None
    """Training: the static volume for the training file system."""
    queues: Sequence[GpuQueue] = field(default_factory=tuple)
    """Kueue queues, one per GPU node group; empty: no Kueue."""
    enable_operator_rbac: bool = True
    """ClusterRole for the operator group: cordon, drain (evict), read pods and nodes; and the health
    gate's namespace with a Role there for its probe Jobs."""
    collector: MetricsCollector | None = None
    """Scrape and remote-write the cluster's metrics; None: exporters only."""
    registry: pulumi.Input[str] = ""
    """The platform's registry host: every chart and image comes from it (its ECR pull-through
    cache and chart repositories)."""

    def __post_init__(self) -> None:
        if self.pool_role not in eks_scheduling.POOL_ROLES:
            raise ValueError(f"pool_role: {self.pool_role!r} must be one of {eks_scheduling.POOL_ROLES}")
        if self.fsx_volume is not None and not NAME.match(self.fsx_volume.namespace):
            raise ValueError(f"fsx_volume.namespace: {self.fsx_volume.namespace!r} is not a namespace name")
        names = [q.node_group for q in self.queues]
        if len(set(names)) != len(names):
            raise ValueError(f"queues: node groups repeat: {names!r}")
        for queue in self.queues:
            if queue.nominal_gpus < 1:
                raise ValueError(f"queues: {queue.node_group!r} has no GPUs ({queue.instance_type})")


def with_images(values: dict[str, object], chart: HelmChart, host: str) -> dict[str, object]:
    """The release's values with every image of the chart pointed at the platform's cache."""
    merged = dict(values)
    for image in chart.images:
        _merge(merged, image.values(host))
    return merged


def _merge(into: dict[str, object], extra: dict[str, object]) -> None:
    for key, value in extra.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            copy = dict(current)
            _merge(copy, value)
            into[key] = copy
        else:
            into[key] = value


def dcgm_counters() -> list[str]:
    """DCGM field names in the exporter's counters file."""
    return [line.split(",")[0].strip() for line in DCGM_COUNTERS.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


class EksGpuWorkloads(pulumi.ComponentResource):
    """Outputs: ``releases`` (chart name -> release name), ``fsx_claim`` (namespace/name or None)."""

    def __init__(self, name: str, args: EksGpuWorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:eks:EksGpuWorkloads", name, None, opts)
        self.registry = pulumi.Output.from_input(args.registry)
        child = pulumi.ResourceOptions(parent=self)
        gpu_pods = {"tolerations": eks_scheduling.node_agent_tolerations(),
                    "affinity": eks_scheduling.gpu_node_affinity()}
        self.releases: dict[str, helm.Release] = {}
        self._release(name, NVIDIA_DEVICE_PLUGIN, {**gpu_pods, "priorityClassName": "system-node-critical"}, child)
        # The EFA plugin's default nodeSelector expects a label our nodes lack; ours is explicit.
        self._release(name, EFA_DEVICE_PLUGIN, {**gpu_pods, "nodeSelector": {}}, child)

        monitoring = core.Namespace(f"{name}-monitoring-ns", metadata=meta.ObjectMetaArgs(
            name=MONITORING_NAMESPACE), opts=child)
        counters = core.ConfigMap(f"{name}-dcgm-counters", metadata=meta.ObjectMetaArgs(
            name="gpufleet-dcgm-counters", namespace=MONITORING_NAMESPACE),
            data={"counters.csv": DCGM_COUNTERS.read_text()},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[monitoring]))
        self._release(name, DCGM_EXPORTER, {
            **gpu_pods,
            "arguments": ["-f", "/etc/dcgm-exporter/gpufleet/counters.csv"],
            "extraConfigMapVolumes": [{"name": "gpufleet-counters",
                                       "configMap": {"name": "gpufleet-dcgm-counters"}}],
            "extraVolumeMounts": [{"name": "gpufleet-counters", "mountPath": "/etc/dcgm-exporter/gpufleet"}],
            "serviceMonitor": {"enabled": False},
        }, pulumi.ResourceOptions(parent=self, depends_on=[counters]))

        if args.collector is not None:
            self._collector(name, args.collector, pulumi.ResourceOptions(parent=self, depends_on=[monitoring]))
        self.fsx_claim: str | None = None
        if args.fsx_volume is not None:
            self.fsx_claim = self._fsx(name, args.fsx_volume, child)
        if args.enable_operator_rbac:
            self._operator_rbac(name, child)
        if args.queues:
            self._kueue(name, args, child)
        self.register_outputs({"releases": {k: r.name for k, r in self.releases.items()},
                               "fsxClaim": self.fsx_claim})

    def _release(self, name: str, chart: HelmChart, values: dict[str, object],
                 opts: pulumi.ResourceOptions) -> helm.Release:
        short = chart.short_name
        release = helm.Release(
            f"{name}-{short}", name=short, chart=self.registry.apply(lambda host: registry_mirror.chart_ref(short, host)),
            version=chart.version, namespace=chart.namespace,
            create_namespace=chart.namespace not in ("kube-system", MONITORING_NAMESPACE),
            values=pulumi.Output.all(self.registry, pulumi.Output.from_input(values)).apply(
                lambda resolved: with_images(resolved[1], chart, resolved[0])),
            atomic=True, cleanup_on_fail=True, max_history=5, opts=opts)
        self.releases[short] = release
        return release

    def _collector(self, name: str, collector: MetricsCollector, opts: pulumi.ResourceOptions) -> None:
        system = {eks_scheduling.SYSTEM_LABEL: "true"}
        config = pulumi.Output.all(collector.remote_write_url, collector.remote_write_role_arn).apply(
            lambda a: metrics_agent.prometheus_config(
                account_id=collector.account_id, stack=collector.stack, region=collector.region,
                remote_write_url=a[0], remote_write_role_arn=a[1],
                scrape_configs=metrics_agent.kubernetes_scrape_configs()))
        textfiles = metrics_agent.TEXTFILE_DIR
        self._release(name, PROMETHEUS, {
            "serviceAccounts": {"server": {"create": True, "name": metrics_agent.COLLECTOR_SERVICE_ACCOUNT}},
            # A forwarder: two hours kept locally to ride out a remote-write outage, nothing more.
            "server": {"retention": "2h", "persistentVolume": {"enabled": False}, "nodeSelector": system},
            "serverFiles": {"prometheus.yml": config},
            "alertmanager": {"enabled": False},
            "prometheus-pushgateway": {"enabled": False},
            "kube-state-metrics": {"enabled": True, "nodeSelector": system},
            "prometheus-node-exporter": {
                "enabled": True,
                "tolerations": [{"operator": "Exists"}],  # every node, GPU taint or not
                "extraArgs": [f"--collector.textfile.directory={textfiles}"],
                "extraHostVolumeMounts": [{"name": "textfiles", "hostPath": textfiles, "mountPath": textfiles,
                                           "readOnly": True}],
            },
        }, opts)

    def _fsx(self, name: str, volume: FsxVolume, child: pulumi.ResourceOptions) -> str:
        namespace = core.Namespace(f"{name}-{volume.namespace}-ns", metadata=meta.ObjectMetaArgs(
            name=volume.namespace), opts=child)
        pv_name = f"{volume.claim_name}-pv"
        pv = core.PersistentVolume(
            f"{name}-fsx-pv", metadata=meta.ObjectMetaArgs(name=pv_name),
            spec=core.PersistentVolumeSpecArgs(
                capacity={"storage": f"{volume.capacity_gib}Gi"},
                access_modes=["ReadWriteMany"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                mount_options=["flock"],
                csi=core.CSIPersistentVolumeSourceArgs(
                    driver="fsx.csi.aws.com", volume_handle=volume.file_system_id,
                    volume_attributes={"dnsname": volume.dns_name, "mountname": volume.mount_name})),
            opts=child)
        core.PersistentVolumeClaim(
            f"{name}-fsx-pvc", metadata=meta.ObjectMetaArgs(name=volume.claim_name, namespace=volume.namespace),
            spec=core.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"], storage_class_name="", volume_name=pv_name,
                resources=core.VolumeResourceRequirementsArgs(requests={"storage": f"{volume.capacity_gib}Gi"})),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, pv]))
        return f"{volume.namespace}/{volume.claim_name}"

    def _operator_rbac(self, name: str, child: pulumi.ResourceOptions) -> None:
        role = rbac.ClusterRole(f"{name}-operator-role", metadata=meta.ObjectMetaArgs(name="gpufleet-operator"),
                                rules=[
                                    rbac.PolicyRuleArgs(api_groups=[""], resources=["nodes"],
                                                        verbs=["get", "list", "watch", "patch"]),
                                    rbac.PolicyRuleArgs(api_groups=[""], resources=["pods"],
                                                        verbs=["get", "list", "watch"]),
                                    rbac.PolicyRuleArgs(api_groups=[""], resources=["pods/eviction"],
                                                        verbs=["create"]),
                                ], opts=child)
        rbac.ClusterRoleBinding(
            f"{name}-operator-binding", metadata=meta.ObjectMetaArgs(name="gpufleet-operator"),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name="gpufleet-operator"),
            subjects=[rbac.SubjectArgs(kind="Group", name=OPERATOR_GROUP, api_group="rbac.authorization.k8s.io")],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]))
        self._health_gate_rbac(name, child)

    def _health_gate_rbac(self, name: str, child: pulumi.ResourceOptions) -> None:
        """The health gate's namespace, and what the operator's probe does there: create and delete
        its Jobs and the peer all-reduce's headless Service, read its pods' logs (the reports)."""
        ns = eks_scheduling.HEALTH_GATE_NAMESPACE
        namespace = core.Namespace(f"{name}-health-gate-ns", metadata=meta.ObjectMetaArgs(name=ns), opts=child)
        after = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        role = rbac.Role(f"{name}-health-gate-role", metadata=meta.ObjectMetaArgs(name="gpufleet-health-gate", namespace=ns),
                         rules=[
                             rbac.PolicyRuleArgs(api_groups=["batch"], resources=["jobs"],
                                                 verbs=["create", "delete", "get", "list"]),
                             rbac.PolicyRuleArgs(api_groups=[""], resources=["services"],
                                                 verbs=["create", "delete", "get"]),
                             rbac.PolicyRuleArgs(api_groups=[""], resources=["pods/log"], verbs=["get"]),
                         ], opts=after)
        rbac.RoleBinding(
            f"{name}-health-gate-binding", metadata=meta.ObjectMetaArgs(name="gpufleet-health-gate", namespace=ns),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="gpufleet-health-gate"),
            subjects=[rbac.SubjectArgs(kind="Group", name=OPERATOR_GROUP, api_group="rbac.authorization.k8s.io")],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]))

    def _kueue(self, name: str, args: EksGpuWorkloadsArgs, child: pulumi.ResourceOptions) -> None:
        kueue = self._release(name, KUEUE, {"controllerManager": {"manager": {"resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"}}}}}, child)
        after = pulumi.ResourceOptions(parent=self, depends_on=[kueue])
        namespace = args.fsx_volume.namespace if args.fsx_volume else args.pool_role
        if args.fsx_volume is None:  # otherwise _fsx made it
            core.Namespace(f"{name}-{namespace}-ns", metadata=meta.ObjectMetaArgs(name=namespace), opts=child)
        for queue in args.queues:
            apiextensions.CustomResource(
                f"{name}-flavor-{queue.node_group}", api_version=KUEUE_API, kind="ResourceFlavor",
                metadata={"name": queue.node_group},
                spec={"nodeLabels": {eks_scheduling.NODE_GROUP_LABEL: queue.node_group},
                      "tolerations": eks_scheduling.gpu_tolerations()}, opts=after)
            apiextensions.CustomResource(
                f"{name}-queue-{queue.node_group}", api_version=KUEUE_API, kind="ClusterQueue",
                metadata={"name": queue.node_group},
                spec={"namespaceSelector": {},
                      "queueingStrategy": "BestEffortFIFO",
                      "resourceGroups": [{"coveredResources": list(queue.quotas()), "flavors": [{
                          "name": queue.node_group,
                          "resources": [{"name": r, "nominalQuota": q} for r, q in queue.quotas().items()]}]}]},
                opts=after)
            apiextensions.CustomResource(
                f"{name}-local-queue-{queue.node_group}", api_version=KUEUE_API, kind="LocalQueue",
                metadata={"name": queue.node_group, "namespace": namespace},
                spec={"clusterQueue": queue.node_group}, opts=after)

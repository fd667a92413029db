"""Pick the adapter for a node group's ``orchestrator`` value from the inventory."""

from __future__ import annotations

import os

from gpufleet.automation.orchestrators.base import NoOrchestrator, Orchestrator
from gpufleet.infra.errors import ConfigError


def for_group(kind: str, *, stack: str, source: str = "inventory") -> Orchestrator:
    """slurm: the local Slurm commands (SLURM_CONF); eks: the kube config context named like the
    stack when there is one, else the current context; none: nothing to drain."""
    if kind == "none":
        return NoOrchestrator()
    if kind == "slurm":
        from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator

        return SlurmOrchestrator()
    if kind == "eks":
        from kubernetes import config

        from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator, api_client

        config_file = os.environ.get("KUBECONFIG") or None
        try:
            contexts, _ = config.list_kube_config_contexts(config_file=config_file)
            names = {c["name"] for c in contexts}
        except (config.ConfigException, FileNotFoundError):
            names = set()
        return KubernetesOrchestrator(api_client(stack if stack in names else None, config_file))
    raise ConfigError(source, f"stacks.{stack}.nodeGroups[].orchestrator", kind, "expected slurm, eks or none")

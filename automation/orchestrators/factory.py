"""Pick the adapter for a node group's ``orchestrator`` value from the inventory."""

from __future__ import annotations

from gpufleet.automation.orchestrators.base import NoOrchestrator, Orchestrator
from gpufleet.infra.errors import ConfigError


def for_group(kind: str, *, stack: str, source: str = "inventory") -> Orchestrator:
    """slurm: the local Slurm commands (SLURM_CONF); eks: the stack's cluster, chosen by
    automation/kube_client.py (context gpufleet-<stack>); none: nothing to drain."""
    if kind == "none":
        return NoOrchestrator()
    if kind == "slurm":
        from gpufleet.automation.orchestrators.slurm import SlurmOrchestrator

        return SlurmOrchestrator()
    if kind == "eks":
        from gpufleet.automation.kube_client import api_client
        from gpufleet.automation.orchestrators.kubernetes import KubernetesOrchestrator

        return KubernetesOrchestrator(api_client(stack))
    raise ConfigError(source, f"stacks.{stack}.nodeGroups[].orchestrator", kind, "expected slurm, eks or none")

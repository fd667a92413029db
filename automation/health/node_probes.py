"""The probe that runs where a stack's nodes live (``healthGate.probe: orchestrator``).

By the orchestrator of the stack's node groups in the inventory:

- ``slurm``: ``SlurmProbe`` (srun onto the node; a held node through its hold reservation), with
  the local Slurm commands (``SLURM_CONF``), as the rebalancer's Slurm adapter;
- ``eks``: ``KubernetesJobProbe`` (a Job pinned to the node), on the stack's cluster as
  automation/kube_client.py chooses it, its image from the account's private registry;
- ``none`` with the inventory's ``nodeProbeEndpoint`` (the sandbox: its emulated instances run the
  node health code when probed): ``EndpointProbe``; without one, nothing can run on the nodes and
  the gate refuses (exit 2) rather than pass them unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpufleet.automation.health.probe import EndpointProbe, NodeProbe, SlurmProbe
from gpufleet.automation.inventory import FleetInventory
from gpufleet.infra.errors import BadInputError

HEALTH_IMAGE_REPOSITORY = "gpufleet/node-health"
"""ECR repository (in each consumer account) of the node image's container twin."""


def health_image(account_id: str, region: str, tag: str) -> str:
    """The health checks' image in the account's private registry (no public registry is reachable
    from the PHI account)."""
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com/{HEALTH_IMAGE_REPOSITORY}:{tag}"


def orchestrator_probes(inventory: FleetInventory, *, dcgm_level: int = 2) -> Callable[[str], NodeProbe]:
    """stack -> its probe, made once per stack on first use (no client exists before)."""
    cache: dict[str, NodeProbe] = {}

    def probe_for(stack: str) -> NodeProbe:
        if stack not in cache:
            cache[stack] = _make(inventory, stack, dcgm_level)
        return cache[stack]

    return probe_for


def _make(inventory: FleetInventory, stack: str, dcgm_level: int) -> Any:
    groups = [g for g in inventory.node_groups if g.stack == stack]
    kinds = sorted({g.orchestrator for g in groups})
    if len(kinds) != 1:
        raise BadInputError(f"stack {stack}: node groups run under {kinds or 'no orchestrator'}; "
                            "the orchestrator probe needs exactly one")
    kind = kinds[0]
    if kind == "slurm":
        from gpufleet.automation.slurm_client import SlurmClient

        return SlurmProbe(SlurmClient(), dcgm_level=dcgm_level)
    if kind == "eks":
        from gpufleet.automation.health.kube_probe import KubernetesJobProbe
        from gpufleet.automation.kube_client import api_client

        out = inventory.stacks[stack]
        tag = (out.cluster.bundle_version if out.cluster and out.cluster.bundle_version else "latest")
        return KubernetesJobProbe(api_client(stack), image=health_image(out.account_id, out.region, tag),
                                  instance_type=groups[0].group.instance_type, dcgm_level=dcgm_level)
    if inventory.node_probe_endpoint:
        return EndpointProbe(inventory.node_probe_endpoint, dcgm_level=dcgm_level)
    raise BadInputError(f"stack {stack}: its node groups have no orchestrator to run the health checks through, "
                        f"and {inventory.source or 'the inventory'} names no nodeProbeEndpoint",
                        "pass --probe local (this host stands in), ssm, or none (unchecked)")

"""The sandbox's fleet inventory: the program's exports with the emulator's ids, through the contract.

Every stack's exports (after ``IdMap`` substitution) are read with
``gpufleet.infra.contract.StackOutputs.from_dict``, exactly as ``gpufleet inventory collect`` reads a
deployed stack's outputs, and written back with ``to_dict``: the sandbox produces nothing the
program did not export, and nothing the contract would refuse.

The one thing the sandbox decides on its own is how it stands in for the orchestrator: it emulates
AWS alone, so no Slurm controller or Kubernetes API answers for its nodes. The node groups keep the
program's ``orchestrator`` (slurm, eks) and the inventory says, once, at its top level, that every
group's orchestrator is stood in for by ``ORCHESTRATOR_STAND_IN`` (``none``: nothing to drain or
ask, see gpufleet.automation.orchestrators.base.NoOrchestrator). A test that brings a real Slurm
or a Kubernetes API removes the key. Its emulated instances answer the health probe
(``nodeProbeEndpoint``: automation/sandbox/node_probe.py runs the node's health code for them).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from gpufleet.automation.inventory import INVENTORY_VERSION, NODE_PROBE_KEY, STAND_IN_KEY
from gpufleet.infra.contract import StackOutputs

GENERATED_BY = "gpufleet sandbox"
ORCHESTRATOR_STAND_IN = "none"
"""The adapter the automation uses for every node group of a sandbox inventory."""
SOURCE = "the rendered program (gpufleet sandbox)"


def contract_outputs(exports: Mapping[str, Mapping[str, Any]]) -> dict[str, StackOutputs]:
    """Each stack's substituted exports read through the contract (ConfigError names stack and key)."""
    return {name: StackOutputs.from_dict(doc, stack=name, source=SOURCE) for name, doc in exports.items()}


def inventory_document(exports: Mapping[str, Mapping[str, Any]], endpoint: str) -> dict[str, Any]:
    """The inventory file's content for a sandbox at ``endpoint``."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    outputs = contract_outputs(exports)
    return {
        "version": INVENTORY_VERSION,
        "collectedAt": now,
        "generatedBy": GENERATED_BY,
        "endpoint": endpoint,
        STAND_IN_KEY: ORCHESTRATOR_STAND_IN,
        NODE_PROBE_KEY: f"{endpoint.rstrip('/')}/_gpufleet/probe",
        "sources": {name: {"kind": "sandbox", "location": endpoint, "updatedAt": now} for name in outputs},
        "stacks": {name: out.to_dict() for name, out in outputs.items()},
    }

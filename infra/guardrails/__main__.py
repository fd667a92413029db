"""Entry point the Pulumi CLI runs for ``--policy-pack infra/guardrails``: serves the policy pack."""

from __future__ import annotations

from pulumi_policy import PolicyPack

# The pack's virtualenv holds the gpufleet package (PulumiPolicy.yaml, requirements.txt).
from gpufleet.infra.guardrails.pack import PACK_NAME, build_policies

PolicyPack(name=PACK_NAME, policies=build_policies())

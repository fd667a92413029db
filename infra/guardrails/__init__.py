"""Guardrails as code: HIPAA-style separation rules over the rendered resources of every stack.

Plain functions (no pulumi import) used by ``gpufleet plan`` offline and wrapped by the policy pack
in this directory (``pulumi preview --policy-pack infra/guardrails``). See docs/guardrails.md.
"""

from gpufleet.infra.guardrails.engine import RULES, evaluate, rule_ids
from gpufleet.infra.guardrails.model import FleetContext, ResourceView, Severity

__all__ = ["RULES", "FleetContext", "ResourceView", "Severity", "evaluate", "rule_ids"]

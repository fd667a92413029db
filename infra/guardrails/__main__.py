"""Entry point the Pulumi CLI runs for ``--policy-pack infra/guardrails``: serves the policy pack."""

from __future__ import annotations

import sys
from pathlib import Path

# The CLI runs this file with infra/guardrails as the working directory; make `import infra` work
# even when the gpufleet package is not installed into the pack's virtualenv.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from pulumi_policy import PolicyPack  # noqa: E402

from infra.guardrails.pack import PACK_NAME, build_policies  # noqa: E402

PolicyPack(name=PACK_NAME, policies=build_policies())

"""The healer's code as the Slurm head runs it: the closure of ``python -m gpufleet.automation.heal``
(infra/scheduler_archive.py's builder, rooted at the healer's entry point) and the fleet's
inventory under ``fleet/``.

Pure: no pulumi import. What the archive leaves to its host: Python 3, the distributions of
``LEFT_TO_HOST`` (the head's image: Ubuntu's python3-boto3, and Slurm's client commands; the EKS
Deployment's image, infra/healer_image.py: each pinned with its dependencies).
"""

from __future__ import annotations

from gpufleet.infra.scheduler_archive import archive_files

__all__ = ["ARCHIVE_DIR", "BUNDLED", "ENTRY_MODULE", "INVENTORY", "LEFT_TO_HOST", "NOT_RUN_BY_THE_SERVICE",
           "healer_files"]

ENTRY_MODULE = "gpufleet.automation.heal.__main__"
ARCHIVE_DIR = "healer"
"""Where the archive sits in the lifecycle bundle (and under the head's install dir)."""
INVENTORY = "fleet/inventory.json"
"""The inventory inside the archive (the service's ``--inventory``)."""
LEFT_TO_HOST = {"boto3": "boto3", "botocore": "botocore", "urllib3": "urllib3", "kubernetes": "kubernetes"}
"""Third-party imports of the healer's closure (scheduler_archive.third_party_imports) the archive
does not carry -> the distribution providing each. kubernetes and urllib3: the EKS path only (the
head's healer never imports them)."""
BUNDLED = frozenset({"yaml"})
"""Third-party imports the archive carries itself (PyYAML's pure-Python modules)."""
NOT_RUN_BY_THE_SERVICE = {"torch": "the local probe's measurements (lifecycle/health): a service healer gates "
                                   "through SSM or the orchestrator's probe Job, never in its own process"}
"""Imports of the closure no service healer reaches, so no host installs them: name -> why."""


def healer_files(inventory_text: str | None) -> dict[str, str]:
    """Archive path -> text. Without an inventory (a first deployment, before `gpufleet inventory
    collect`) the code is packaged alone and every pass fails naming the missing file."""
    return archive_files({"inventory.json": inventory_text} if inventory_text is not None else {},
                         root=ENTRY_MODULE)

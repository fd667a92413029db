"""The healer's code as the Slurm head runs it: the closure of ``python -m gpufleet.automation.heal``
(infra/scheduler_archive.py's builder, rooted at the healer's entry point) and the fleet's
inventory under ``fleet/``.

Pure: no pulumi import. What the archive leaves to the host: Python 3 and boto3/botocore (the
head's image: Ubuntu's python3-boto3), and Slurm's client commands.
"""

from __future__ import annotations

from gpufleet.infra.scheduler_archive import archive_files

__all__ = ["ARCHIVE_DIR", "ENTRY_MODULE", "INVENTORY", "healer_files"]

ENTRY_MODULE = "gpufleet.automation.heal.__main__"
ARCHIVE_DIR = "healer"
"""Where the archive sits in the lifecycle bundle (and under the head's install dir)."""
INVENTORY = "fleet/inventory.json"
"""The inventory inside the archive (the service's ``--inventory``)."""


def healer_files(inventory_text: str | None) -> dict[str, str]:
    """Archive path -> text. Without an inventory (a first deployment, before `gpufleet inventory
    collect`) the code is packaged alone and every pass fails naming the missing file."""
    return archive_files({"inventory.json": inventory_text} if inventory_text is not None else {},
                         root=ENTRY_MODULE)

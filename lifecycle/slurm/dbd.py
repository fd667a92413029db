"""Render slurmdbd.conf: Slurm's accounting daemon on the head node, storing into MariaDB there.

Pure, like conf.py, and from the same :class:`SlurmClusterSpec`: slurmdbd runs on the controller's
host (DbdHost/DbdAddr = SlurmctldHost's), listens on the port slurm.conf's AccountingStoragePort
names, and connects to the database as the SlurmUser. There is no StoragePass: on the head the
database user authenticates through MariaDB's unix_socket plugin (the OS user slurmdbd runs as), so
the file holds no secret and may travel in the lifecycle bundle. slurmdbd still refuses a
slurmdbd.conf readable by anyone but the SlurmUser: install it mode 0600, owned by that user.
"""

from __future__ import annotations

from gpufleet.lifecycle.slurm.conf import SlurmClusterSpec

MODE = 0o600
"""slurmdbd.conf's mode; its owner is the SlurmUser."""


def render_slurmdbd_conf(spec: SlurmClusterSpec, *, pid_file: str = "") -> str:
    """slurmdbd.conf text for ``spec``'s site (which must keep accounting on)."""
    s = spec.site
    if not s.accounting:
        raise ValueError(f"cluster {spec.cluster_name}: SlurmSite.accounting is off; there is no slurmdbd to configure")
    lines = [
        f"# slurmdbd.conf for cluster {spec.cluster_name}, rendered by gpufleet lifecycle/slurm/dbd.py.",
        "# Mode 0600, owned by the SlurmUser (slurmdbd refuses it otherwise). No password: unix_socket auth.",
        f"DbdHost={s.controller_hostname}",
        f"DbdAddr={s.controller_addr}",
        f"DbdPort={s.slurmdbd_port}",
        f"SlurmUser={s.slurm_user}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={s.munge_socket}",
        f"LogFile={s.log_dir}/slurmdbd.log",
        f"PidFile={pid_file or s.run_dir + '/slurmdbd.pid'}",
        f"DebugLevel={s.slurmdbd_debug}",
        "StorageType=accounting_storage/mysql",
        f"StorageHost={s.storage_host}",
        f"StoragePort={s.storage_port}",
        f"StorageUser={s.slurm_user}",
        f"StorageLoc={s.storage_db}",
    ]
    return "\n".join(lines) + "\n"

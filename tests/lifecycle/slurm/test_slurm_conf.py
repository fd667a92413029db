"""slurm.conf rendering: golden file for the training reference stack, and the spec's rules.

The spec comes from the control plane (``gpufleet.infra.slurm_plan.spec_from_stack``, tested in
tests/infra/test_slurm_plan.py); the renderer under test is the bundle's."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.infra.slurm_plan import spec_from_stack
from gpufleet.infra.stackfile import load_stack
from gpufleet.lifecycle.slurm.conf import (
    CRED_EXPIRE_FLOOR_S,
    CRED_EXPIRE_MESSAGES,
    PartitionSpec,
    SlurmClusterSpec,
    SlurmSite,
    StaticNodeSpec,
    render_cgroup_conf,
    render_gres_conf,
    render_node_gres_conf,
    render_slurm_conf,
)
from tests.golden import check_golden

REPO = Path(__file__).resolve().parents[3]
AWS_SITE = SlurmSite(controller_hostname="slurm-head", controller_addr="10.20.0.10")




def training_spec(site: SlurmSite = AWS_SITE) -> SlurmClusterSpec:
    return spec_from_stack(load_stack(REPO / "stacks" / "Pulumi.training.yaml"), site)


def test_training_slurm_conf_matches_golden() -> None:
    check_golden("slurm.training.conf", render_slurm_conf(training_spec(), source="stacks/Pulumi.training.yaml"))


def test_site_parameters_reach_the_file() -> None:
    site = SlurmSite(controller_hostname="localhost", controller_addr="127.0.0.1", controller_port=7001,
                     slurmd_port=7002, cred_expire_s=5, health_check_program=None, prolog=None,
                     static_nodes=(StaticNodeSpec(name="n1", hostname="localhost", addr="127.0.0.1", port=7003,
                                                  cpus=2, real_memory_mib=1000, features=("train-h100",),
                                                  gres="gpu:h100:8"),))
    text = render_slurm_conf(training_spec(site))
    assert "SlurmctldHost=localhost(127.0.0.1)" in text
    assert "AuthInfo=socket=/run/munge/munge.socket.2,cred_expire=5" in text
    assert "NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=7003 CPUs=2 RealMemory=1000 Feature=train-h100 Gres=gpu:h100:8 State=UNKNOWN" in text
    assert "HealthCheckProgram" not in text and "Prolog=" not in text
    assert "MaxNodeCount=13" in text
    assert render_gres_conf(site.static_nodes, device_dir="/x").splitlines()[1] == "NodeName=n1 Name=gpu Type=h100 File=/x/nvidia[0-7]"


def test_node_gres_conf_lists_device_files() -> None:
    part = training_spec().partition("train-h100")
    assert render_node_gres_conf(part).splitlines()[1] == "Name=gpu Type=h100 File=/dev/nvidia[0-7]"


def test_cgroup_conf_only_with_cgroup_plugins() -> None:
    assert "ConstrainDevices=yes" in (render_cgroup_conf(training_spec()) or "")
    local = SlurmSite(controller_hostname="h", controller_addr="127.0.0.1",
                      proctrack_type="proctrack/linuxproc", task_plugin="task/none")
    assert render_cgroup_conf(training_spec(local)) is None


def test_rendering_is_deterministic() -> None:
    assert render_slurm_conf(training_spec()) == render_slurm_conf(training_spec())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "bad name"}, "PartitionSpec.name"),
    ({"max_nodes": -1}, "max_nodes"),
])
def test_partition_validation_names_field(kwargs: dict, message: str) -> None:
    base = {"name": "p", "feature": "p", "max_nodes": 1, "gpus_per_node": 8, "gpu_type": "h100"}
    with pytest.raises(ValueError, match=message):
        PartitionSpec(**(base | kwargs))


def test_duplicate_partitions_and_two_defaults_are_rejected() -> None:
    p = PartitionSpec(name="p", feature="p", max_nodes=1, gpus_per_node=8, gpu_type="h100", is_default=True)
    q = PartitionSpec(name="q", feature="q", max_nodes=1, gpus_per_node=8, gpu_type="h100", is_default=True)
    with pytest.raises(ValueError, match="repeat"):
        SlurmClusterSpec(cluster_name="c", partitions=(p, p), site=AWS_SITE)
    with pytest.raises(ValueError, match="default"):
        SlurmClusterSpec(cluster_name="c", partitions=(p, q), site=AWS_SITE)


def test_accounting_goes_to_slurmdbd_on_the_head_with_gpus_tracked() -> None:
    text = render_slurm_conf(training_spec())
    for line in ("AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=10.20.0.10",
                 "AccountingStoragePort=6819", "AccountingStorageTRES=gres/gpu",
                 "AccountingStoragePass=/run/munge/munge.socket.2",
                 "JobAcctGatherType=jobacct_gather/cgroup"):
        assert line in text.splitlines()
    off = SlurmSite(controller_hostname="h", controller_addr="127.0.0.1", accounting=False)
    text = render_slurm_conf(training_spec(off))
    assert "AccountingStorageType=accounting_storage/none" in text.splitlines()
    assert "AccountingStorageHost" not in text


def test_slurmdbd_conf_on_the_head_has_no_password() -> None:
    from gpufleet.lifecycle.slurm.dbd import render_slurmdbd_conf

    lines = render_slurmdbd_conf(training_spec()).splitlines()
    for line in ("DbdHost=slurm-head", "DbdAddr=10.20.0.10", "DbdPort=6819", "SlurmUser=slurm",
                 "StorageType=accounting_storage/mysql", "StorageHost=localhost", "StorageUser=slurm",
                 "StorageLoc=slurm_acct_db", "AuthInfo=socket=/run/munge/munge.socket.2",
                 "LogFile=/var/log/slurm/slurmdbd.log", "PidFile=/run/slurm/slurmdbd.pid"):
        assert line in lines
    assert not any(line.startswith("StoragePass") for line in lines)
    off = SlurmSite(controller_hostname="h", controller_addr="127.0.0.1", accounting=False)
    with pytest.raises(ValueError, match="accounting is off"):
        render_slurmdbd_conf(training_spec(off))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"controller_addr": "10.0.0.1\nAuthType=auth/none"}, r"SlurmSite.controller_addr='10.0.0.1\\nAuthType"),
    ({"controller_hostname": "head node"}, "SlurmSite.controller_hostname='head node'"),
    ({"storage_host": "db;rm"}, "SlurmSite.storage_host='db;rm'"),
    ({"slurmdbd_port": 0}, "SlurmSite.slurmdbd_port=0 is not a TCP port"),
    ({"storage_port": 70000}, "SlurmSite.storage_port=70000"),
    ({"storage_db": "acct-db"}, "SlurmSite.storage_db='acct-db'"),
    ({"slurm_user": "Slurm User"}, "SlurmSite.slurm_user='Slurm User'"),
    ({"job_acct_gather_type": "linux"}, "SlurmSite.job_acct_gather_type='linux'"),
])
def test_site_values_that_reach_the_files_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlurmSite(**({"controller_hostname": "slurm-head", "controller_addr": "10.20.0.10"} | kwargs))


def test_the_requeue_delay_is_lowered_to_what_a_launch_needs() -> None:
    """A requeued job waits cred_expire + 1 s (slurm.conf(5)); the product renders 30 s, three
    MessageTimeouts (a launch's delivery to slurmd and two tree hops), not Slurm's 120 s."""
    text = render_slurm_conf(training_spec())
    assert "AuthInfo=socket=/run/munge/munge.socket.2,cred_expire=30" in text
    assert "MessageTimeout=10" in text and AWS_SITE.cred_expire_s == CRED_EXPIRE_MESSAGES * AWS_SITE.message_timeout_s
    assert "# Authentication: munge. A requeued job waits cred_expire + 1 s before it starts again" in text


def test_a_credential_lifetime_under_slurms_floor_is_refused() -> None:
    # Slurm itself would log an error and fall back to 120 s: the opposite of what was asked.
    with pytest.raises(ValueError, match=r"SlurmSite.cred_expire_s=4: Slurm's floor is 5 s"):
        SlurmSite(controller_hostname="slurm-head", controller_addr="10.20.0.10", cred_expire_s=4)
    assert SlurmSite(controller_hostname="h", controller_addr="10.0.0.1", cred_expire_s=CRED_EXPIRE_FLOOR_S)

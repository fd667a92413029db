"""The deep tier's peer all-reduce on a real local Slurm: a held new node and the admitted node of
its group run one srun step together (the peer joins the hold reservation for that step only),
each task the bundle's entry point under torchrun (gloo), and the gate grades the new node."""

from __future__ import annotations

import pytest

from gpufleet.automation.health.gate import gate
from gpufleet.automation.health.peer import CHECK
from gpufleet.automation.health.probe import SlurmProbe, free_port
from gpufleet.automation.slurm_client import SlurmClient
from gpufleet.lifecycle.health.results import Status
from gpufleet.lifecycle.slurm.hold import hold_reservation
from tests.automation.test_slurm_held_gate import IID, NODE, node_install  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.torch]


def test_held_node_and_its_admitted_peer_all_reduce_in_one_srun(make_local_slurm, node_install) -> None:  # noqa: F811
    python, install_dir = node_install
    slurm = make_local_slurm(num_nodes=1)
    slurm.register_dynamic_node(NODE, held=True)
    client = SlurmClient(slurm.env)
    probe = SlurmProbe(client, python=str(python), install_dir=str(install_dir), pair_port=free_port(),
                       node_env={"GPUFLEET_INSTANCE_TYPE": "none", "GPUFLEET_NO_IMDS": "1"}, timeout_s=600)
    candidates = {c.name: c for c in probe.peer_candidates([IID])}
    assert not candidates[NODE].admitted and candidates["node1"].admitted and candidates["node1"].healthy
    assert candidates["node1"].idle
    assert candidates[NODE].group == candidates["node1"].group == "train-h100"

    report = gate([IID], probe, ("deep",))
    results = {r.check: r for r in report.nodes[0].report.results}
    assert results[CHECK].status is not Status.FAIL, report.summary
    assert results[CHECK].measured > 0 and results[CHECK].detail.startswith("all-reduce busbw with peer node1: ")
    assert report.ok, report.summary

    pair = [line for line in slurm.run("scontrol", "-o", "show", "job").stdout.splitlines()
            if f"JobName={SlurmProbe.JOB_NAME}-pair" in line]
    assert len(pair) == 1 and f"Reservation={hold_reservation(NODE)} " in pair[0]
    nodelist = pair[0].split(" NodeList=", 1)[1].split()[0]
    assert set(slurm.run("scontrol", "show", "hostnames", nodelist).stdout.split()) == {NODE, "node1"}, pair[0]
    # The peer left the reservation again: only the new node stays held.
    held = slurm.run("scontrol", "-o", "show", "reservation", hold_reservation(NODE)).stdout
    assert f"Nodes={NODE} " in held, held

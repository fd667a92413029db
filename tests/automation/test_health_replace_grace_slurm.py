"""`health --replace` on the real local Slurm gives the failed nodes' jobs the healer's checkpoint
grace (automation/heal/grace.py, from the checkpoint time they publish) before it requeues them: a
job that saves on USR1 and requeues itself leaves on its own and is not requeued, a job that only
logs the signal is requeued once the grace is over and not before, a healthy node's job is not
told anything; and when every job leaves on its own the wait ends before the grace."""

from __future__ import annotations

import os

import pytest

from gpufleet.automation.health.probe import LocalProbe
from gpufleet.automation.health.replace import HealthArgs, in_service, run_health
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.rebalance.journal import Journal
from gpufleet.lifecycle.health.results import Tier
from tests.automation.slurm_checkpoint_jobs import (
    ONLY_LOGS,
    SELF_REQUEUE,
    marks,
    on_local_slurm,
    submit,
    wait_published,
)
from tests.automation.test_health_cli import clients_of
from tests.lifecycle.health.fixture_runner import fake_tools

pytestmark = [pytest.mark.emulator, pytest.mark.slurm]

SAVE_S = 1.0
"""What each job publishes as its checkpoint time: the grace is 3 x 1 + 5 = 8 s, raised to 10."""
GRACE_S = 10.0


def replace_on_slurm(sandbox, make_local_slurm, monkeypatch, tmp_path, scripts):
    """The training group train-h100 on a real Slurm, a job per node (``scripts``: node index ->
    script, the others ONLY_LOGS), the nodes named in ``scripts`` failed by their ECC check, then
    ``health --replace``. Returns (run, jobs by node index, marks dir, cluster, the run's journal
    events, the progress messages)."""
    inventory = load_inventory(sandbox.inventory)
    clients = clients_of(inventory)
    ref = next(g for g in inventory.node_groups if g.group.name == "train-h100")
    ids = sorted(in_service(clients(ref.stack, "autoscaling"), ref.group.asg_name)[1])
    slurm, inventory_path = on_local_slurm(make_local_slurm, sandbox.inventory, ids, monkeypatch, tmp_path)
    out = marks(tmp_path)
    jobs = {n: submit(slurm, slurm.node_names[n], scripts.get(n, ONLY_LOGS), out, 1700000000 + n, SAVE_S)
            for n in range(len(ids))}
    wait_published(slurm, jobs.values())
    healthy = fake_tools(tmp_path / "healthy", "nvidia_smi_q_h100x8_healthy.xml")
    dbe = fake_tools(tmp_path / "dbe", "nvidia_smi_q_h100x8_dbe.xml")
    probe = LocalProbe(env={"GPUFLEET_INSTANCE_TYPE": ref.group.instance_type, "PATH": f"{healthy}:{os.environ['PATH']}"},
                       env_by_node={ids[n]: {"PATH": f"{dbe}:{os.environ['PATH']}"} for n in scripts}, timeout_s=120)
    messages: list[str] = []
    run = run_health(HealthArgs(pool=ref.group.pool, tiers=(Tier.QUICK,), replace=True, probe="local",
                                inventory=inventory_path, replace_timeout_s=60, max_per_group=2, max_per_pool=2),
                     clients=clients, probes=lambda stack: probe, progress=messages.append)
    assert sorted(run.report.failed) == sorted(ids[n] for n in scripts), run.report.failed
    journal = Journal(clients(inventory.platform_stack, "dynamodb"), inventory.journal_table)
    return run, jobs, out, slurm, journal.events(run.op_id), messages


def test_replace_waits_the_grace_and_requeues_only_what_stayed(sandbox, make_local_slurm, monkeypatch, tmp_path):
    run, jobs, out, slurm, events, messages = replace_on_slurm(
        sandbox, make_local_slurm, monkeypatch, tmp_path, {3: SELF_REQUEUE, 4: ONLY_LOGS})
    (drained,) = run.drains
    assert drained.orchestrator == "slurm" and drained.grace_s == GRACE_S
    assert drained.signalled == (str(jobs[3]), str(jobs[4]))
    assert drained.left_on_their_own == (str(jobs[3]),) and drained.requeued == (str(jobs[4]),)
    assert drained.still_busy == ()
    told = next(e for e in events if e.event_type == "intent" and e.step == "checkpoint")
    evict = next(e for e in events if e.event_type == "intent" and e.step == "evict")
    # The job that stayed was requeued only once its grace was over: it had the grace to save in.
    assert (evict.at_ns - told.at_ns) / 1e9 >= GRACE_S
    assert evict.detail["jobs"] == [str(jobs[4])]
    terminated = next(e for e in events if e.event_type == "intent" and e.detail.get("call", "").startswith("Terminate"))
    assert terminated.at_ns > evict.at_ns, "the node was terminated only after its work was moved off"
    assert next(e for e in events if e.step == "drain").detail == drained.to_dict()

    assert (out / f"saved-{jobs[3]}").exists() and (out / f"told-{jobs[4]}").exists()
    assert slurm.job(jobs[3]).restarts >= 1 and slurm.job(jobs[4]).restarts >= 1
    for n in (0, 1, 2):  # the healthy nodes' jobs were not told anything
        assert slurm.job(jobs[n]).state == "RUNNING" and not (out / f"told-{jobs[n]}").exists()
    assert len(run.replacements) == 2 and all(r.replaced_by for r in run.replacements) and run.ok
    said = [m for m in messages if "to checkpoint (10 s" in m or "drained" in m or ": terminated" in m]
    assert "to checkpoint (10 s" in said[0] and "drained" in said[1] and ": terminated" in said[2], said
    assert f"requeued after the grace: {jobs[4]}" in " ".join(messages)
    # The wait says what it still waits for.
    assert any(m.startswith("waiting for ") and str(jobs[4]) in m and "to checkpoint and leave" in m
               for m in messages), messages


def test_the_wait_ends_when_every_job_left_on_its_own(sandbox, make_local_slurm, monkeypatch, tmp_path):
    run, jobs, out, slurm, events, _ = replace_on_slurm(sandbox, make_local_slurm, monkeypatch, tmp_path,
                                                        {4: SELF_REQUEUE})
    (drained,) = run.drains
    assert drained.left_on_their_own == (str(jobs[4]),) and drained.requeued == ()
    assert drained.waited_s < GRACE_S, "the wait went on after the job had left"
    assert not [e for e in events if e.step == "evict"], "nothing was left to evict"
    assert (out / f"saved-{jobs[4]}").exists() and slurm.job(jobs[4]).restarts >= 1
    assert run.ok

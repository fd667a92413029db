"""Job-file strings are checked against what their target accepts (sbatch, a shell, Slurm, the
Kubernetes API), and the rendered Job is one the API server and Kueue accept and count right.

Before the fix a ``partition`` or ``workdir`` holding a newline reached the sbatch script as a
command line of its own (and the ``#SBATCH`` lines after it were dropped); ``$``-anchored patterns
let ``name``/``time_limit`` end in a newline; the Job had no queue label and no exit-code rules.
"""

from __future__ import annotations

import pytest

from gpufleet.automation.jobs.k8s import QUEUE_LABEL, render_manifests
from gpufleet.automation.jobs.sbatch import render_sbatch
from gpufleet.automation.jobs.spec import parse_job
from gpufleet.infra.errors import ConfigError
from gpufleet.lifecycle.exit_codes import REQUEUE_EXIT_CODE
from tests.fakes.kube import VERSIONS, invalid

BASE = {"name": "demo", "backend": "slurm", "nodes": 2, "gpus_per_node": 8,
        "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference", "checkpoint_dir": "/fsx/ckpt/demo"}
EKS = {**BASE, "backend": "eks", "image": "img:1", "instance_type": "p5.48xlarge", "queue": "train-h100"}


@pytest.mark.parametrize(("change", "key"), [
    ({"partition": "train\ntouch /tmp/owned"}, "partition"),
    ({"workdir": "/fsx/w\ntouch /tmp/owned"}, "workdir"),
    ({"name": "demo\n"}, "name"),
    ({"time_limit": "04:00:00\n"}, "time_limit"),
    ({"args": ["--steps", "1\nrm -rf /"]}, "args"),
    ({"env": {"A": "x\ny"}}, "env.A"),
    ({"entrypoint": "m\r"}, "entrypoint"),
    ({"partition": "a b"}, "partition"),
    ({"partition": "a#b"}, "partition"),
    ({"checkpoint_dir": "/fsx/ckpt/../../etc"}, "checkpoint_dir"),
    ({"workdir": "/fsx/../root"}, "workdir"),
    ({"workdir": "relative"}, "workdir"),
    ({"torchrun": "torchrun; id"}, "torchrun"),
])
def test_strings_that_would_reach_sbatch_or_a_shell_are_refused(change, key):
    with pytest.raises(ConfigError) as info:
        parse_job({**BASE, **change}, "jobs/bad.yaml")
    assert (info.value.source, info.value.key, info.value.code) == ("jobs/bad.yaml", key, 2)


@pytest.mark.parametrize(("change", "key"), [
    ({"namespace": "Training"}, "namespace"),
    ({"queue": "train_h100"}, "queue"),
    ({"queue": ""}, "queue"),
    ({"pool": "-training"}, "pool"),
    ({"fsx_claim": "FSx"}, "fsx_claim"),
    ({"image": "img:1 --privileged"}, "image"),
])
def test_kubernetes_names_follow_the_api_rules(change, key):
    with pytest.raises(ConfigError) as info:
        parse_job({**EKS, **change}, "jobs/bad.yaml")
    assert info.value.key == key


def test_accepted_strings_stay_one_line_each_in_the_sbatch_script():
    spec = parse_job({**BASE, "partition": "train-h100", "workdir": "/fsx/work dir", "args": ["a b", "$(id)"]},
                     "job.yaml")
    script = render_sbatch(spec)
    assert "#SBATCH --partition=train-h100\n" in script
    srun = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1 and "'a b' '$(id)'" in srun[0]


def test_rendered_job_and_service_pass_the_official_schemas_strict():
    assert len(VERSIONS) >= 3
    for manifest in render_manifests(parse_job(EKS, "job.yaml")):
        assert invalid(manifest) is None, manifest["kind"]


def first_rule(job: dict, exit_code: int | None = None, condition: str | None = None) -> str:
    """The Job controller's podFailurePolicy evaluation: the first matching rule decides; none: Count."""
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes and exit_code is not None:
            inside = exit_code in codes["values"]
            if exit_code != 0 and (inside if codes["operator"] == "In" else not inside):
                return rule["action"]
        for cond in rule.get("onPodConditions", ()):
            if cond["type"] == condition and cond["status"] == "True":
                return rule["action"]
    return "Count"


def test_pod_failure_policy_ignores_stops_and_disruptions_and_counts_real_failures():
    job = render_manifests(parse_job(EKS, "job.yaml"))[1]
    assert REQUEUE_EXIT_CODE == 143
    assert first_rule(job, exit_code=143) == "Ignore"
    assert first_rule(job, condition="DisruptionTarget") == "Ignore"
    for code in (1, 137, 139):
        assert first_rule(job, exit_code=code) == "Count", code
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it


def test_the_job_names_its_local_queue():
    job = render_manifests(parse_job(EKS, "job.yaml"))[1]
    assert job["metadata"]["labels"][QUEUE_LABEL] == "train-h100"

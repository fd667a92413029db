"""Job files render to golden sbatch scripts and manifests; bad files fail naming file, key, value.

Regenerate the golden files after an intended change: GPUFLEET_UPDATE_GOLDEN=1 pytest tests/automation/jobs
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.jobs.k8s import render_manifests
from gpufleet.automation.jobs.launch import render
from gpufleet.automation.jobs.sbatch import render_sbatch
from gpufleet.automation.jobs.spec import load_job, parse_job
from gpufleet.infra.errors import ConfigError
from tests.conftest import REPO, require_binary
from tests.golden import check_golden

EXAMPLES = sorted(p.relative_to(REPO) for p in (REPO / "examples").glob("gpt-reference.*.yaml"))

BASE = {"name": "demo", "backend": "slurm", "nodes": 2, "gpus_per_node": 8,
        "entrypoint": "gpufleet.lifecycle.jobs.gpt_reference", "checkpoint_dir": "/fsx/ckpt/demo"}




@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_examples_render_to_golden(example, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_job(example)
    suffix = "sbatch.sh" if spec.backend == "slurm" else "manifests.yaml"
    check_golden(f"{example.stem}.{suffix}", render(spec))


def test_sbatch_requeues_signals_and_launches_one_torchrun_per_node():
    script = render_sbatch(parse_job({**BASE, "time_limit": 90, "signal_before_s": 200}, "job.yaml"))
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=USR1@200" in script
    assert "#SBATCH --time=01:30:00" in script
    srun = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1
    assert 'torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint "$head_addr:29500"' in srun[0]
    assert "SIGUSR1" in srun[0] and "-m gpufleet.lifecycle.jobs.gpt_reference" in srun[0]
    assert "FI_PROVIDER" not in script, "no EFA environment without an EFA instance type"


def test_efa_instance_types_get_efa_env_and_devices():
    spec = parse_job({**BASE, "backend": "eks", "image": "img:1", "instance_type": "p5.48xlarge",
                      "queue": "train-h100"}, "job.yaml")
    assert spec.job_env()["FI_PROVIDER"] == "efa"
    job = render_manifests(spec)[1]
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"gpufleet.io/pool": "training"}


@pytest.mark.parametrize(("change", "key"), [
    ({"backend": "pbs"}, "backend"),
    ({"nodes": 0}, "nodes"),
    ({"name": "Has_Caps"}, "name"),
    ({"checkpoint_dir": "relative/dir"}, "checkpoint_dir"),
    ({"time_limit": "4h"}, "time_limit"),
    ({"instance_type": "p9.huge"}, "instance_type"),
    ({"instance_type": "p4d.24xlarge", "gpus_per_node": 16}, "gpus_per_node"),
    ({"backend": "eks"}, "image"),
    ({"backend": "eks", "image": "i:1", "checkpoint_dir": "/data/ckpt"}, "checkpoint_dir"),
    ({"backend": "eks", "image": "i:1", "checkpoint_dir": "/fsx/ckpt"}, "queue"),
    ({"max_restart": 3}, "max_restart"),
    ({"env": {"BAD-NAME": "1"}}, "env.BAD-NAME"),
    ({"nodes": "two"}, "nodes"),
])
def test_bad_job_files_name_the_key(change, key):
    with pytest.raises(ConfigError) as info:
        parse_job({**BASE, **change}, "jobs/bad.yaml")
    assert info.value.source == "jobs/bad.yaml" and info.value.key == key
    assert info.value.code == 2


def test_cli_dry_run_json_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    done = runner.invoke(app, ["launch", "examples/gpt-reference.eks.yaml", "--dry-run", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["submitted"] is False and result["job_id"] is None
    assert [m["kind"] for m in yaml.safe_load_all(result["rendered"])] == ["Service", "Job"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "nodes": -1}))
    done = runner.invoke(app, ["launch", str(bad)])
    assert done.exit_code == 2
    assert "nodes = -1" in done.stderr and "Traceback" not in done.output


@pytest.mark.shellcheck
def test_rendered_sbatch_passes_shellcheck(tmp_path):
    shellcheck = require_binary("shellcheck")
    script = tmp_path / "job.sbatch"
    script.write_text(render_sbatch(parse_job({**BASE, "instance_type": "p5.48xlarge"}, "job.yaml")))
    done = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


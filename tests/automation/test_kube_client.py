"""Which cluster a command talks to: one rule (automation/kube_client.py, docs/eks.md), never the
current context on its own; KUBECONFIG read at call time; no kubeconfig is one error line."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.kube_client import choose
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.infra.errors import BadInputError
from tests.fakes.kube import FakeKube


def kubeconfig(path, *contexts: str, current: str | None = None) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current or contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts]}))
    return str(path)


def test_the_stacks_context_is_chosen_never_the_current_one(tmp_path):
    env = {"KUBECONFIG": kubeconfig(tmp_path / "config", "gpufleet-inference", "prod-admin", current="prod-admin")}
    target = choose("inference", environ=env, token=tmp_path / "no-token")
    assert (target.context, target.reason) == ("gpufleet-inference", "stack inference")
    with pytest.raises(BadInputError) as info:
        choose("training", environ=env, token=tmp_path / "no-token")
    message = info.value.message
    assert "no kube context 'gpufleet-training'" in message and f"KUBECONFIG={env['KUBECONFIG']}" in message
    assert "contexts: gpufleet-inference, prod-admin" in message
    assert "aws eks update-kubeconfig --name gpufleet-training --alias gpufleet-training" in info.value.hint


def test_an_explicit_context_wins_and_must_exist(tmp_path):
    env = {"KUBECONFIG": kubeconfig(tmp_path / "config", "gpufleet-inference", "lab")}
    assert choose("inference", "lab", environ=env).context == "lab"
    with pytest.raises(BadInputError, match=r"--context 'labs': no such context .*contexts: gpufleet-inference, lab"):
        choose("inference", "labs", environ=env)


def test_kubeconfig_paths_are_merged_and_read_at_call_time(tmp_path, monkeypatch):
    first = kubeconfig(tmp_path / "a", "gpufleet-training")
    second = kubeconfig(tmp_path / "b", "gpufleet-inference")
    monkeypatch.setenv("KUBECONFIG", first)
    assert choose("training").kubeconfig == first
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert choose("inference").context == "gpufleet-inference"


def test_without_a_kubeconfig_inside_a_pod_the_pods_cluster_is_used(tmp_path):
    token = tmp_path / "token"
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": "10.100.0.1"}
    with pytest.raises(BadInputError, match="not running in a pod"):
        choose("inference", environ=env, token=token)  # the address alone is not a pod
    token.write_text("eyJ...")
    target = choose("inference", environ=env, token=token)
    assert (target.context, target.kubeconfig, target.reason) == (None, None, "in-cluster")


def test_unset_kubeconfig_means_the_home_file(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BadInputError, match=r"~/.kube/config \(KUBECONFIG is unset\) \(contexts: none\)"):
        choose("training")
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube" / "config", "gpufleet-training")
    assert choose("training").context == "gpufleet-training"


def test_the_adapter_and_jobs_reach_the_cluster_of_the_stack(tmp_path, monkeypatch):
    with FakeKube() as kube:
        (tmp_path / "config").write_text(yaml.safe_dump(kube.kubeconfig("gpufleet-training")))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
        kube.add_node("n1", "i-0000000000000001")
        assert for_group("eks", stack="training").ready(["i-0000000000000001"]) == {"i-0000000000000001"}
        listed = CliRunner().invoke(app, ["jobs", "ls", "--backend", "eks", "--stack", "training", "--json"])
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.stdout) == []
        assert ("GET", "/apis/batch/v1/namespaces/training/jobs") in kube.requests


def test_jobs_without_a_kubeconfig_is_one_error_line(tmp_path):
    done = CliRunner().invoke(app, ["jobs", "ls", "--backend", "eks"], env={"KUBECONFIG": str(tmp_path / "none")})
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: no kube context 'gpufleet-training'") and len(lines) == 2  # error, hint
    assert "Traceback" not in done.output

"""EKS submission through the official kubernetes client against the fake API server on 127.0.0.1
(tests/fakes/kube.py: it validates what it receives against the official schemas, answers 201 with
the object and 409 when the name exists)."""

from __future__ import annotations

import pytest
from kubernetes import client

from gpufleet.automation.jobs.k8s import KubernetesError
from gpufleet.automation.jobs.launch import launch
from tests.conftest import REPO
from tests.fakes.kube import FakeKube


@pytest.fixture
def kube():
    with FakeKube() as fake:
        yield fake


@pytest.fixture
def api(kube):
    return client.ApiClient(client.Configuration(host=kube.url))


def test_launch_creates_service_then_indexed_job(kube, api):
    result = launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert result.submitted and result.job_id == "training/gpt-reference"
    assert list(kube.objects) == [("services", "training", "gpt-reference"), ("jobs", "training", "gpt-reference")]
    assert kube.rejected == []
    job = kube.objects[("jobs", "training", "gpt-reference")]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == "gpt-reference"


def test_second_launch_of_same_name_fails_with_a_hint(api):
    launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    with pytest.raises(KubernetesError) as info:
        launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert "409" in info.value.message and "cancel" in (info.value.hint or "")


def test_refused_job_leaves_no_service_behind(kube, api):
    kube.refuse = {"jobs"}
    with pytest.raises(KubernetesError, match="403"):
        launch(REPO / "examples" / "gpt-reference.eks.yaml", dry_run=False, kube_api=api)
    assert kube.objects == {}

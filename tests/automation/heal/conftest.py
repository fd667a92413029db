"""Fixtures of the healer's tests."""

from __future__ import annotations

import pytest
import yaml

from tests.automation.heal.eks_fleet import EksFleet
from tests.fakes.kube import FakeKube


@pytest.fixture
def eks(sandbox, tmp_path, monkeypatch):
    with FakeKube() as kube:
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kube.kubeconfig("gpufleet-inference")))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        with EksFleet(sandbox, kube, tmp_path) as fleet:
            yield fleet

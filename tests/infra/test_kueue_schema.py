"""Every Kueue object the program renders is valid under Kueue's own CRD schema, strictly: the
openAPIV3Schema of the release the program installs, with unknown fields refused (what the API
server does under ``fieldValidation=Strict``; by default it would prune them silently, and Kueue
would then run without them). The CRDs are vendored unchanged (tests/fixtures/kueue/README.md).

Not covered: the CRDs' x-kubernetes-validations (CEL rules), which only the API server evaluates.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gpufleet.infra import eks_workloads

CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "kueue"
README_TAG = re.compile(r"at tag v(\d+\.\d+\.\d+)")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every object that lists its properties closed to others, as strict field
    validation treats it (objects marked preserve-unknown-fields stay open)."""
    out = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(out)
    # metadata is validated by the API server itself, not by the CRD's (open) object schema
    out["properties"]["metadata"] = {"type": "object"}
    return out


@functools.cache
def validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    out = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            if version["served"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                out[key] = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    return out


def kueue_objects(stacks) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for stack in stacks:
        for resource in stack.resources:
            if resource.type.startswith("kubernetes:kueue.x-k8s.io/"):
                obj = {"apiVersion": resource.inputs["apiVersion"], "kind": resource.inputs["kind"],
                       **{k: v for k, v in resource.inputs.items() if k not in ("apiVersion", "kind")}}
                found.append((resource.urn, obj))
    return found


def test_the_vendored_crds_are_the_release_the_program_installs():
    tag = README_TAG.search((CRDS / "README.md").read_text())
    assert tag and tag.group(1) == eks_workloads.KUEUE.version, (tag, eks_workloads.KUEUE.version)
    assert {k for _, k in validators()} == {"ClusterQueue", "LocalQueue", "ResourceFlavor"}


def test_every_rendered_kueue_object_is_valid_under_its_crd(rendered_fleet, training_on_eks):
    schemas = validators()
    objects = kueue_objects([*rendered_fleet.values(), training_on_eks["training"]])
    assert {obj["kind"] for _, obj in objects} == {"ClusterQueue", "LocalQueue", "ResourceFlavor"}
    for urn, obj in objects:
        assert obj["apiVersion"] == eks_workloads.KUEUE_API, urn
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in schemas[obj["apiVersion"], obj["kind"]].iter_errors(obj)]
        assert not errors, (urn, errors)


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda q: q["spec"]["resourceGroups"][0].__setitem__("coveredResource", ["nvidia.com/gpu"]), "Additional properties"),
    (lambda q: q["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0].pop("nominalQuota"), "required"),
    (lambda q: q["spec"].__setitem__("queueingStrategy", "FIFO"), "is not one of"),
])
def test_the_schema_refuses_what_the_api_server_refuses(training_on_eks, mutate, why):
    """The check can fail: a misspelt field, a missing quota and a bad enum are each refused."""
    schemas = validators()
    [(urn, queue)] = [(u, o) for u, o in kueue_objects([training_on_eks["training"]])
                      if o["kind"] == "ClusterQueue" and o["metadata"]["name"] == "train-h100"]
    bad = copy.deepcopy(queue)
    mutate(bad)
    messages = [e.message for e in schemas[bad["apiVersion"], "ClusterQueue"].iter_errors(bad)]
    assert any(why in m for m in messages), (urn, messages)

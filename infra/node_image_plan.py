"""What each gpufleet node image bakes, and the EC2 Image Builder component documents that bake it.

Pure: no pulumi import. Two images, one per cluster kind:

- ``eks``: on the EKS-optimized AL2023 NVIDIA AMI (driver, container toolkit, EFA, nodeadm):
  node_exporter, DCGM and dcgm-exporter, the node venv. No Slurm.
- ``slurm``: on the Deep Learning AMI (Ubuntu 24.04: driver, EFA, NCCL), which has neither Slurm nor
  munge: pinned Slurm and munge, then the same as ``eks``.

Each install step is one script in ``infra/image_steps/``, the same file the component runs and
the tests run on the build host (in a scratch prefix). Pins are exported ahead of the script in the
component's commands. The image's version is a digest of everything it bakes (scripts, pins, the
node requirements, the parent image), like the bundle's: a change to any of them is a new image.
"""

from __future__ import annotations

import enum
import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpufleet.lifecycle.bootstrap.bundle import LIFECYCLE_DIR, NODE_REQUIREMENTS

STEPS_DIR = Path(__file__).resolve().parent / "image_steps"
NODE_EXPORTER_VERSION = "1.9.1"
NODE_EXPORTER_RELEASE = f"https://github.com/prometheus/node_exporter/releases/download/v{NODE_EXPORTER_VERSION}"
PROMETHEUS_VERSION = "3.4.1"
"""The Slurm head's collector (``prometheus --agent``; SigV4 remote write with a profile)."""
PROMETHEUS_RELEASE = f"https://github.com/prometheus/prometheus/releases/download/v{PROMETHEUS_VERSION}"


class ImageKind(enum.StrEnum):
    """Which cluster kind's nodes boot the image."""

    EKS = "eks"
    SLURM = "slurm"


@dataclass(frozen=True, kw_only=True)
class ImageStep:
    """One install step: a script of ``image_steps/`` and the pins it is run with."""

    script: str
    """File name in ``infra/image_steps/``."""
    pins: Mapping[str, str]
    """``GPUFLEET_*`` variables exported before the script (versions, URLs)."""
    label: str = ""
    """Name of the step where one script serves several (release-binary.sh); default: the script's."""

    @property
    def name(self) -> str:
        return self.label or self.script.removesuffix(".sh")

    def text(self) -> str:
        return (STEPS_DIR / self.script).read_text()

    def command(self) -> str:
        """The step as one bash command: its pins, then the script itself."""
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(self.pins.items()))
        return exports + self.text()


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """One node image: its parent and its steps, in order."""

    kind: ImageKind
    """The cluster kind the image serves."""
    parent_image: str
    """Image Builder parent: an ``ssm:`` parameter of the AWS base image (resolved at each build)."""
    steps: tuple[ImageStep, ...]
    """Install steps in order."""
    root_device: str
    """The parent's root device (AL2023: /dev/xvda, Ubuntu: /dev/sda1)."""

    @property
    def version(self) -> str:
        """12 hex digits over the parent, every step's command and order."""
        digest = hashlib.sha256(json.dumps([self.kind.value, self.parent_image, self.root_device,
                                            [(s.name, s.command()) for s in self.steps]]).encode())
        return digest.hexdigest()[:12]

    def component_document(self, step: ImageStep) -> str:
        """The Image Builder component document (YAML) that runs one step in the build phase."""
        return yaml.safe_dump({
            "name": f"gpufleet-{self.kind.value}-{step.name}",
            "description": f"gpufleet {self.kind.value} node image: {step.name} (infra/image_steps/{step.script})",
            "schemaVersion": 1.0,
            "phases": [{"name": "build", "steps": [{
                "name": "".join(part.title() for part in step.name.split("-")),
                "action": "ExecuteBash",
                "inputs": {"commands": [step.command()]},
            }]}],
        }, sort_keys=False, width=120)


def node_requirements_text() -> str:
    return (LIFECYCLE_DIR / NODE_REQUIREMENTS).read_text()


def common_steps(dcgm_pins: Mapping[str, str], python_pins: Mapping[str, str]) -> tuple[ImageStep, ...]:
    return (
        ImageStep(script="release-binary.sh", label="exporters", pins={
            "GPUFLEET_BINARY": "node_exporter",
            "GPUFLEET_BINARY_URL": f"{NODE_EXPORTER_RELEASE}/node_exporter-{NODE_EXPORTER_VERSION}.linux-amd64.tar.gz",
            # No digest pinned yet (the release page was out of reach when this was written): the step
            # checks the download against the release's own sha256sums.txt until one is.
            "GPUFLEET_BINARY_SUMS_URL": f"{NODE_EXPORTER_RELEASE}/sha256sums.txt"}),
        ImageStep(script="dcgm.sh", pins=dcgm_pins),
        ImageStep(script="node-venv.sh", pins={"GPUFLEET_NODE_REQUIREMENTS": node_requirements_text(), **python_pins}),
    )


def image_plans(kubernetes_version: str = "1.33") -> dict[ImageKind, ImagePlan]:
    """The two node images. Package versions are the distributions' own spellings (dnf on AL2023,
    apt on Ubuntu 24.04 noble)."""
    return {
        ImageKind.EKS: ImagePlan(
            kind=ImageKind.EKS,
            parent_image=(f"ssm:/aws/service/eks/optimized-ami/{kubernetes_version}/amazon-linux-2023/"
                          "x86_64/nvidia/recommended/image_id"),
            root_device="/dev/xvda",
            steps=common_steps({"GPUFLEET_DCGM_VERSION": "4.2.3", "GPUFLEET_DCGM_EXPORTER_VERSION": "4.1.1"},
                               {"GPUFLEET_PYTHON_PACKAGE": "python3.11", "GPUFLEET_PYTHON_BIN": "python3.11"}),
        ),
        ImageKind.SLURM: ImagePlan(
            kind=ImageKind.SLURM,
            parent_image="ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
            root_device="/dev/sda1",
            steps=(ImageStep(script="slurm-munge.sh", pins={"GPUFLEET_SLURM_VERSION": "23.11.4-1.2ubuntu5",
                                                              "GPUFLEET_MUNGE_VERSION": "0.5.15-4build1"}),
                   # The head's collector; the compute nodes carry it unused (one image for both).
                   ImageStep(script="release-binary.sh", label="prometheus", pins={
                       "GPUFLEET_BINARY": "prometheus",
                       "GPUFLEET_BINARY_URL": f"{PROMETHEUS_RELEASE}/prometheus-{PROMETHEUS_VERSION}.linux-amd64.tar.gz",
                       "GPUFLEET_BINARY_SUMS_URL": f"{PROMETHEUS_RELEASE}/sha256sums.txt"}),
                   *common_steps({"GPUFLEET_DCGM_VERSION": "1:4.2.3-1", "GPUFLEET_DCGM_EXPORTER_VERSION": "4.1.1-4.0.4"},
                                 {"GPUFLEET_PYTHON_PACKAGE": "python3.12-venv", "GPUFLEET_PYTHON_BIN": "python3.12"})),
        ),
    }


def parameter_name(kind: ImageKind) -> str:
    """SSM parameter holding the current AMI id of a kind, in the platform and in each consumer."""
    return f"/gpufleet/node-image/{kind.value}/ami-id"

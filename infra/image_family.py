"""Which operating-system image a GPU node boots, and what follows from it. Pure: no pulumi import.

The root device name is a property of the image, not of the node: a launch template that maps
the root volume under another name gives the node a stray extra disk and leaves the image's small
root volume in place.
"""

from __future__ import annotations

import enum

__all__ = ["ImageFamily", "family_of_eks_ami_type", "family_of_image_id"]


class ImageFamily(enum.StrEnum):
    """The image families GPU nodes run."""

    AL2023_EKS_GPU = "al2023-eks-gpu"
    """Amazon Linux 2023 EKS accelerated image (EKS picks it from the node group's AMI type)."""
    UBUNTU_DLAMI = "ubuntu-dlami"
    """Ubuntu 22.04 Deep Learning Base AMI with the NVIDIA driver and EFA (Slurm and plain nodes)."""

    @property
    def root_device(self) -> str:
        """Device name of the image's root volume (``RootDeviceName`` of DescribeImages)."""
        # Amazon Linux images register their root as /dev/xvda; Canonical's Ubuntu images and
        # the DLAMIs built on them as /dev/sda1.
        return "/dev/xvda" if self is ImageFamily.AL2023_EKS_GPU else "/dev/sda1"


IMAGE_FAMILY_TAG = "gpufleet:image-family"
"""Launch-template tag naming the family of the custom AMI its nodes boot."""


def family_of_eks_ami_type(ami_type: str) -> ImageFamily | None:
    """The family of an EKS node group's ``amiType`` (AL2023_x86_64_NVIDIA, ...); None if not ours."""
    return ImageFamily.AL2023_EKS_GPU if ami_type.startswith("AL2023_") else None


def family_of_image_id(image_id: str) -> ImageFamily | None:
    """The family a launch template's ``imageId`` names, when it says (a DLAMI SSM path does)."""
    lowered = image_id.lower()
    if "ubuntu" in lowered:
        return ImageFamily.UBUNTU_DLAMI
    if "al2023" in lowered or "amazon-linux-2023" in lowered:
        return ImageFamily.AL2023_EKS_GPU
    return None

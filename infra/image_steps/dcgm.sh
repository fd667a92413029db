#!/bin/bash
# Image step (GPU nodes): NVIDIA DCGM (the host engine the health checks' dcgmi diag and
# dcgm-exporter talk to) and dcgm-exporter, pinned, from NVIDIA's CUDA repository, which the AWS
# GPU base images already configure. apt on the Ubuntu DLAMI, dnf on AL2023.
# Parameters: GPUFLEET_DCGM_VERSION (package version), GPUFLEET_DCGM_EXPORTER_VERSION.
set -euo pipefail
: "${GPUFLEET_DCGM_VERSION:?pinned DCGM version}" "${GPUFLEET_DCGM_EXPORTER_VERSION:?pinned dcgm-exporter version}"
if command -v dnf > /dev/null; then
    dnf install -y -q "datacenter-gpu-manager-4-core-$GPUFLEET_DCGM_VERSION" \
        "datacenter-gpu-manager-exporter-$GPUFLEET_DCGM_EXPORTER_VERSION"
    dnf versionlock add datacenter-gpu-manager-4-core datacenter-gpu-manager-exporter 2> /dev/null \
        || echo "image step dcgm: dnf versionlock unavailable; versions pinned at install only"
elif command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "datacenter-gpu-manager-4-core=$GPUFLEET_DCGM_VERSION" \
        "datacenter-gpu-manager-exporter=$GPUFLEET_DCGM_EXPORTER_VERSION"
    apt-mark hold datacenter-gpu-manager-4-core datacenter-gpu-manager-exporter
else
    echo "image step dcgm: neither dnf nor apt-get on this image" >&2
    exit 1
fi
systemctl enable nvidia-dcgm.service
dcgmi --version

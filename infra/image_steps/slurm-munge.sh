#!/bin/bash
# Image step (Slurm nodes, Ubuntu DLAMI): pinned Slurm (dynamic nodes need 22.05 or later) and munge
# from the distribution's archive, so every node of an image runs the same Slurm as its head node.
# Parameters: GPUFLEET_SLURM_VERSION, GPUFLEET_MUNGE_VERSION (exact Debian/Ubuntu package versions),
#   GPUFLEET_SLURM_PACKAGES (default: the daemons, slurmrestd and the client commands).
# Staging (tests): GPUFLEET_IMAGE_ROOT=<dir> resolves the pins against the apt index without
#   installing (apt-get --simulate), then unpacks the .debs found in GPUFLEET_IMAGE_DEBS into <dir>.
set -euo pipefail
: "${GPUFLEET_SLURM_VERSION:?pinned Slurm package version}" "${GPUFLEET_MUNGE_VERSION:?pinned munge package version}"
root=${GPUFLEET_IMAGE_ROOT:-}
read -r -a slurm_packages <<< "${GPUFLEET_SLURM_PACKAGES:-slurmd slurmctld slurmrestd slurm-client}"
pins=()
for package in "${slurm_packages[@]}"; do
    pins+=("$package=$GPUFLEET_SLURM_VERSION")
done
pins+=("munge=$GPUFLEET_MUNGE_VERSION" "libmunge2=$GPUFLEET_MUNGE_VERSION")

if [ -z "$root" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${pins[@]}"
    # Hold the pins: an unattended upgrade must not move one node off the cluster's Slurm version.
    apt-mark hold "${pins[@]%%=*}"
else
    apt-get install --simulate -q --no-install-recommends "${pins[@]}" > /dev/null
    debs=${GPUFLEET_IMAGE_DEBS:?staging needs GPUFLEET_IMAGE_DEBS, a directory of .deb files}
    for pin in "${pins[@]}"; do
        package=${pin%%=*} version=${pin#*=}
        # Debian file names spell the epoch's colon as %3a.
        deb="$debs/${package}_${version//:/%3a}_$(dpkg --print-architecture).deb"
        if [ -f "$deb" ]; then
            dpkg-deb -x "$deb" "$root"
        else
            echo "staging: $package $version resolves but has no .deb in $debs; not unpacked"
        fi
    done
fi

# Look in the image (or the staging root) itself, never on PATH. Debian's packages install
# slurmd-wlm and name it slurmd through update-alternatives, which unpacking a .deb does not run.
installed() {
    local path
    for path in "$root/usr/sbin/$1" "$root/usr/bin/$1" "$root/usr/sbin/$1-wlm"; do
        if [ -x "$path" ]; then
            echo "$path"
            return 0
        fi
    done
    echo "image step slurm-munge: $1 not installed under ${root:-/}" >&2
    return 1
}
slurmd=$(installed slurmd)
installed munged > /dev/null
version=$("$slurmd" -V)
major=$(printf '%s\n' "$version" | sed -n 's/^slurm[^0-9]*\([0-9]*\)\.\([0-9]*\).*/\1\2/p')
if [ -z "$major" ] || [ "$major" -lt 2205 ]; then
    echo "image step slurm-munge: '$version' is older than 22.05 (no dynamic nodes)" >&2
    exit 1
fi
echo "image step slurm-munge: $version, munge $GPUFLEET_MUNGE_VERSION"

#!/bin/bash
# Image step: one Prometheus project binary (node_exporter on every node, prometheus for the Slurm
# head's collector) from its pinned release tarball, checked against its published SHA-256 before
# anything is unpacked. (dcgm-exporter comes with DCGM, see dcgm.sh.)
# Parameters: GPUFLEET_BINARY (the executable's name in the tarball, installed to /usr/local/bin),
#   GPUFLEET_BINARY_URL; GPUFLEET_BINARY_SHA256 (the pinned digest) or, while none is pinned,
#   GPUFLEET_BINARY_SUMS_URL (the release's sha256sums.txt: catches a corrupt or truncated
#   download, not a release replaced at its origin).
# Staging (tests): GPUFLEET_IMAGE_ROOT=<dir> installs under <dir>.
set -euo pipefail
: "${GPUFLEET_BINARY:?executable name}" "${GPUFLEET_BINARY_URL:?release tarball URL}"
root=${GPUFLEET_IMAGE_ROOT:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

curl -fsSL --retry 5 --retry-delay 5 -o "$work/release.tar.gz" "$GPUFLEET_BINARY_URL"
digest=${GPUFLEET_BINARY_SHA256:-}
if [ -z "$digest" ]; then
    : "${GPUFLEET_BINARY_SUMS_URL:?no GPUFLEET_BINARY_SHA256 and no sha256sums URL}"
    curl -fsSL --retry 5 --retry-delay 5 -o "$work/sha256sums.txt" "$GPUFLEET_BINARY_SUMS_URL"
    digest=$(awk -v name="$(basename "$GPUFLEET_BINARY_URL")" '$2 == name { print $1 }' "$work/sha256sums.txt")
    if [ -z "$digest" ]; then
        echo "image step $GPUFLEET_BINARY: $(basename "$GPUFLEET_BINARY_URL") is not in $GPUFLEET_BINARY_SUMS_URL" >&2
        exit 1
    fi
fi
echo "$digest  $work/release.tar.gz" | sha256sum --check --strict --quiet
tar -xzf "$work/release.tar.gz" -C "$work" --no-same-owner
binary=$(find "$work" -mindepth 2 -maxdepth 2 -type f -name "$GPUFLEET_BINARY" -perm -u+x | head -n 1)
if [ -z "$binary" ]; then
    echo "image step $GPUFLEET_BINARY: no $GPUFLEET_BINARY executable in $GPUFLEET_BINARY_URL" >&2
    exit 1
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/$GPUFLEET_BINARY"
"$root/usr/local/bin/$GPUFLEET_BINARY" --version

#!/bin/bash
# Image step (every node): Prometheus node_exporter from its pinned release tarball, checked against
# its published SHA-256 before anything is unpacked. (dcgm-exporter comes with DCGM, see dcgm.sh.)
# Parameters: GPUFLEET_NODE_EXPORTER_URL; GPUFLEET_NODE_EXPORTER_SHA256 (the pinned digest) or, while
#   none is pinned, GPUFLEET_NODE_EXPORTER_SUMS_URL (the release's sha256sums.txt: catches a corrupt or
#   truncated download, not a release replaced at its origin).
# Staging (tests): GPUFLEET_IMAGE_ROOT=<dir> installs under <dir>.
set -euo pipefail
: "${GPUFLEET_NODE_EXPORTER_URL:?release tarball URL}"
root=${GPUFLEET_IMAGE_ROOT:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

curl -fsSL --retry 5 --retry-delay 5 -o "$work/node_exporter.tar.gz" "$GPUFLEET_NODE_EXPORTER_URL"
digest=${GPUFLEET_NODE_EXPORTER_SHA256:-}
if [ -z "$digest" ]; then
    : "${GPUFLEET_NODE_EXPORTER_SUMS_URL:?no GPUFLEET_NODE_EXPORTER_SHA256 and no sha256sums URL}"
    curl -fsSL --retry 5 --retry-delay 5 -o "$work/sha256sums.txt" "$GPUFLEET_NODE_EXPORTER_SUMS_URL"
    digest=$(awk -v name="$(basename "$GPUFLEET_NODE_EXPORTER_URL")" '$2 == name { print $1 }' "$work/sha256sums.txt")
    if [ -z "$digest" ]; then
        echo "image step exporters: $(basename "$GPUFLEET_NODE_EXPORTER_URL") is not in $GPUFLEET_NODE_EXPORTER_SUMS_URL" >&2
        exit 1
    fi
fi
echo "$digest  $work/node_exporter.tar.gz" | sha256sum --check --strict --quiet
tar -xzf "$work/node_exporter.tar.gz" -C "$work" --no-same-owner
binary=$(find "$work" -mindepth 2 -maxdepth 2 -type f -name node_exporter -perm -u+x | head -n 1)
if [ -z "$binary" ]; then
    echo "image step exporters: no node_exporter executable in $GPUFLEET_NODE_EXPORTER_URL" >&2
    exit 1
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/node_exporter"
"$root/usr/local/bin/node_exporter" --version

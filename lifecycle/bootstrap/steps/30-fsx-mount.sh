#!/bin/bash
# Mount FSx for Lustre (with retries) and keep it in /etc/fstab.
# Parameters: GPUFLEET_FSX_DNS_NAME, GPUFLEET_FSX_MOUNT_NAME, GPUFLEET_FSX_MOUNT_PATH (no DNS name: skipped).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ -z "${GPUFLEET_FSX_DNS_NAME:-}" ]; then
    log "no FSx for Lustre file system for this node: skipped"
    exit 0
fi
require_var GPUFLEET_FSX_MOUNT_NAME GPUFLEET_FSX_MOUNT_PATH
source_spec="${GPUFLEET_FSX_DNS_NAME}@tcp:/${GPUFLEET_FSX_MOUNT_NAME}"
target=$GPUFLEET_FSX_MOUNT_PATH
fstab="${GPUFLEET_ROOT:-}/etc/fstab"
options="relatime,flock,_netdev,x-systemd.automount,x-systemd.requires=network-online.target"

mkdir -p "${GPUFLEET_ROOT:-}$target"
touch "$fstab"
if awk -v t="$target" '$2 == t && $3 == "lustre" { found = 1 } END { exit !found }' "$fstab"; then
    log "fstab already mounts $target"
else
    printf '%s %s lustre %s 0 0\n' "$source_spec" "$target" "$options" >> "$fstab"
    log "added $source_spec on $target to /etc/fstab"
fi

if mountpoint -q "${GPUFLEET_ROOT:-}$target"; then
    log "$target already mounted"
    exit 0
fi
# The file system's DNS name and the Lustre client can take a while after boot.
retry "${GPUFLEET_RETRY_ATTEMPTS:-5}" "${GPUFLEET_RETRY_DELAY_S:-5}" \
    mount -t lustre -o relatime,flock "$source_spec" "${GPUFLEET_ROOT:-}$target"
log "mounted $source_spec on $target"

#!/bin/bash
# EFA/libfabric check: the efa provider must list every EFA interface the instance type has.
# Parameters: GPUFLEET_EFA_INTERFACES (expected count; 0 skips the check).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

expected=${GPUFLEET_EFA_INTERFACES:-0}
if [ "$expected" -eq 0 ]; then
    log "no EFA interfaces expected on ${GPUFLEET_INSTANCE_TYPE:-this instance}: skipped"
    exit 0
fi
export PATH="$PATH:/opt/amazon/efa/bin"

efa_devices() {
    # Each device shows once per endpoint type; count the RDM domains (rdmap79s0-rdm).
    fi_info -p efa -t FI_EP_RDM 2>/dev/null | sed -n 's/^ *domain: *\(.*\)-rdm$/\1/p' | sort -u | wc -l
}

enough_devices() {
    local found
    found=$(efa_devices)
    log "fi_info -p efa: $found of $expected EFA devices"
    [ "$found" -ge "$expected" ]
}

# The EFA driver can finish loading after user data starts.
retry "${GPUFLEET_RETRY_ATTEMPTS:-5}" "${GPUFLEET_RETRY_DELAY_S:-5}" enough_devices

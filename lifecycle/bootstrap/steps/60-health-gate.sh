#!/bin/bash
# Health gate: a GPU node joins the cluster only after the quick health checks pass.
# Also writes health.env, which the Slurm HealthCheckProgram reads (Slurm gives it no PATH).
# Parameters: GPUFLEET_ROLE, GPUFLEET_NUM_GPUS, GPUFLEET_INSTANCE_TYPE, GPUFLEET_PYTHON,
#             GPUFLEET_FSX_MOUNT_PATH, GPUFLEET_HEALTH_TIERS; GPUFLEET_INSTALL_DIR (the directory
#             holding gpufleet/lifecycle, which PYTHONPATH makes importable; default: found from here).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

python=${GPUFLEET_PYTHON:-/opt/gpufleet/venv/bin/python3}
# This script is <install dir>/gpufleet/lifecycle/bootstrap/steps/60-health-gate.sh.
install_dir=${GPUFLEET_INSTALL_DIR:-$(cd "$(dirname "$0")/../../../.." && pwd)}
textfile=/var/lib/node_exporter/textfile/gpufleet_health_quick.prom
write_file /etc/gpufleet/health.env 0644 <<ENV
GPUFLEET_PYTHON=$python
GPUFLEET_INSTANCE_TYPE=${GPUFLEET_INSTANCE_TYPE:-}
GPUFLEET_FSX_MOUNT=${GPUFLEET_FSX_MOUNT_PATH:-}
GPUFLEET_HEALTH_TEXTFILE=$textfile
ENV

case "${GPUFLEET_ROLE:-}" in
    slurm-compute | eks-node) ;;
    *) log "role ${GPUFLEET_ROLE:-none} serves no jobs: health gate skipped"; exit 0 ;;
esac
if [ "${GPUFLEET_NUM_GPUS:-0}" -eq 0 ]; then
    log "no GPUs: health gate skipped"
    exit 0
fi

log "running health checks (tiers ${GPUFLEET_HEALTH_TIERS:-quick})"
if PYTHONPATH="$install_dir" "$python" -m gpufleet.lifecycle.health \
        --tiers "${GPUFLEET_HEALTH_TIERS:-quick}" --textfile "${GPUFLEET_ROOT:-}$textfile"; then
    log "health gate passed"
else
    rc=$?
    log "health gate FAILED (exit $rc): the node stays out of the cluster"
    exit "$rc"
fi

#!/bin/bash
# Slurm Prolog (PrologFlags=Alloc): runs as root on every node of an allocation before the job.
# A non-zero exit drains the node and requeues the job, so check only what makes the node unfit:
# the shared file system the job will read.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
health_env=${GPUFLEET_HEALTH_ENV:-/etc/gpufleet/health.env}
fsx_mount=""
if [ -r "$health_env" ]; then
    fsx_mount=$(sed -n 's/^GPUFLEET_FSX_MOUNT=//p' "$health_env")
fi
if [ -n "$fsx_mount" ] && ! mountpoint -q "$fsx_mount"; then
    echo "gpufleet prolog: $fsx_mount is not mounted on ${SLURMD_NODENAME:-$(hostname -s)}" >&2
    exit 1
fi
exit 0

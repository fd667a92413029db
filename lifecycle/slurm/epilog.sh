#!/bin/bash
# Slurm Epilog: runs as root on every node after a job. Removes what NCCL and torch leave in
# /dev/shm when a job is killed, so the next job starts with the node's full shared memory.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ -n "${SLURM_JOB_UID:-}" ]; then
    find /dev/shm -maxdepth 1 -user "$SLURM_JOB_UID" \( -name 'nccl-*' -o -name 'torch_*' \) -delete 2>/dev/null
fi
exit 0

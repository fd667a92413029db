#!/bin/bash
# Slurm nodes: the image must carry Slurm 22.05 or later (dynamic nodes, `slurmd -Z`) and munge.
# Fails early, naming what is missing, instead of half-joining a node.
# Parameters: GPUFLEET_ROLE.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

case "${GPUFLEET_ROLE:-}" in
    slurm-head) needed=(slurmctld slurmrestd munged scontrol) ;;
    slurm-compute) needed=(slurmd munged scontrol) ;;
    slurm-login) needed=(sbatch squeue munged) ;;
    *) log "role ${GPUFLEET_ROLE:-none} runs no Slurm: skipped"; exit 0 ;;
esac
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for program in "${needed[@]}"; do
    command -v "$program" > /dev/null || missing+=("$program")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "the image lacks ${missing[*]}: build it with Slurm >= 22.05 and munge"
    exit 1
fi

if [ "$GPUFLEET_ROLE" = slurm-login ]; then
    log "found ${needed[*]}"
    exit 0
fi
# Client commands need a slurm.conf even for -V; the daemons do not.
version=$("${needed[0]}" -V)
major=$(printf '%s\n' "$version" | sed -n 's/^slurm[^0-9]*\([0-9]*\)\.\([0-9]*\).*/\1\2/p')
if [ -z "$major" ] || [ "$major" -lt 2205 ]; then
    log "found '$version': dynamic nodes need Slurm 22.05 or later"
    exit 1
fi
log "found $version and ${needed[*]}"

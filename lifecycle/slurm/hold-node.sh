#!/bin/bash
# Register a new dynamic node held: run BEFORE its slurmd first starts.
# Usage: hold-node.sh NODE_NAME "NODE_CONF" (the `slurmd -Z --conf` string: Feature=... Gres=...).
#
# A node that registers with `slurmd -Z` is schedulable at once (slurmd cannot register drained,
# and draining after registration races the scheduler). So the node's record is created first
# (`scontrol create ... State=FUTURE`, with this host's hardware from `slurmd -C`), then a
# maintenance reservation that only root may use covers it: when slurmd registers, jobs of the
# partition cannot start there. The control plane's health gate runs its checks on the node with
# `srun --reservation=gpufleet-unverified-<node>` and admits the node by deleting the reservation.
# slurmd's unit runs it before every start too (ExecStartPre, bootstrap step 70-join): a node that
# rebooted or whose slurmd restarted registers held again and goes back through the gate.
# Needs root (munge) and the cluster's slurm.conf. Running it again changes nothing.
set -euo pipefail
export PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
node=${1:?usage: hold-node.sh NODE_NAME NODE_CONF}
node_conf=${2:-}
reservation="gpufleet-unverified-$node"

if scontrol -o show reservation "$reservation" >/dev/null 2>&1; then
    echo "gpufleet hold: $node already held by reservation $reservation"
    exit 0
fi
# `slurmd -C`: "NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..", then UpTime.
hardware=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* *//')
# shellcheck disable=SC2086  # the hardware and the node conf are lists of Key=Value words
if ! out=$(scontrol create "NodeName=$node" $hardware $node_conf State=FUTURE 2>&1); then
    case "$out" in
        *"already exists"*|*"Duplicate"*) ;;  # created by an earlier run
        *) echo "gpufleet hold: scontrol create NodeName=$node failed: $out" >&2; exit 1 ;;
    esac
fi
# IGNORE_JOBS: a node back from a crash or an unclean reboot still carries its lost jobs in
# slurmctld's view until slurmd registers, and Slurm refuses to reserve busy nodes without it.
scontrol create reservation "ReservationName=$reservation" "Nodes=$node" Users=root StartTime=now \
    Duration=infinite Flags=MAINT,IGNORE_JOBS
echo "gpufleet hold: $node held by reservation $reservation until the health gate admits it"

#!/bin/bash
# The healer on the head node: `python -m gpufleet.automation.heal --loop` as gpufleet-healer.service,
# next to the slurmctld it watches. Its code is the healer archive the program uploads beside the
# bundle (healer/: the control plane's modules the pass imports and the fleet's inventory;
# infra/slurm_healer.py); it runs with the host's python3 and boto3 (Ubuntu's python3-boto3), never
# with the node venv, and from its own folder, so it does not shadow the bundle's gpufleet.lifecycle.
# As root: 15-imds-guard lets only root reach the instance role's credentials, and Slurm's drain,
# resume and reboot need an administrator. Everything else root could do is taken away below.
# Parameters: GPUFLEET_ROLE; GPUFLEET_HEALER_INTERVAL_S (seconds between passes, default 60),
#             GPUFLEET_HEALER_PYTHON (default /usr/bin/python3), GPUFLEET_HEALER_PROBE (default ssm).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${GPUFLEET_ROLE:-}" != slurm-head ]; then
    log "role ${GPUFLEET_ROLE:-none} runs no healer: skipped"
    exit 0
fi
archive="$GPUFLEET_LIFECYCLE_DIR/healer"
if [ ! -f "$archive/gpufleet/automation/heal/__main__.py" ]; then
    log "no healer archive in the bundle ($archive): this cluster heals only when an operator runs gpufleet heal"
    exit 0
fi
python=${GPUFLEET_HEALER_PYTHON:-/usr/bin/python3}
interval=${GPUFLEET_HEALER_INTERVAL_S:-60}
probe=${GPUFLEET_HEALER_PROBE:-ssm}
case "$interval" in
    '' | *[!0-9]*) log "GPUFLEET_HEALER_INTERVAL_S=$interval: expected whole seconds, 1 to 3600"; exit 2 ;;
esac
if [ "$interval" -lt 1 ] || [ "$interval" -gt 3600 ]; then
    log "GPUFLEET_HEALER_INTERVAL_S=$interval: expected whole seconds, 1 to 3600"
    exit 2
fi
if ! "$python" -c 'import boto3' 2> /dev/null; then
    log "$python has no boto3: the head's image needs python3-boto3 for the healer"
    exit 1
fi
# A fresh copy each time: a module the new archive no longer has must not linger.
dest=/opt/gpufleet/healer
rm -rf "${GPUFLEET_ROOT:-}$dest.new"
mkdir -p "${GPUFLEET_ROOT:-}$dest.new"
cp -R "$archive/." "${GPUFLEET_ROOT:-}$dest.new/"
chmod -R u=rwX,go=rX "${GPUFLEET_ROOT:-}$dest.new"
rm -rf "${GPUFLEET_ROOT:-}$dest"
mv "${GPUFLEET_ROOT:-}$dest.new" "${GPUFLEET_ROOT:-}$dest"
inventory="$dest/fleet/inventory.json"
if [ ! -f "${GPUFLEET_ROOT:-}$inventory" ]; then
    log "the archive has no inventory: each pass fails naming $inventory until gpufleet inventory collect and pulumi up"
fi

write_file /etc/systemd/system/gpufleet-healer.service 0644 <<UNIT
[Unit]
Description=gpufleet healer: leave, reboot or replace this cluster's faulty nodes
After=network-online.target slurmctld.service munge.service
Wants=network-online.target

[Service]
Type=simple
Environment=PYTHONPATH=$dest PYTHONDONTWRITEBYTECODE=1
WorkingDirectory=/var/lib/gpufleet-healer
ExecStart=$python -m gpufleet.automation.heal --loop --interval $interval --inventory $inventory --probe $probe --sources ec2 --identity instance
Restart=on-failure
RestartSec=30
StateDirectory=gpufleet-healer
StandardOutput=journal
StandardError=journal
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
UMask=0077

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now gpufleet-healer.service
log "healer started: $python -m gpufleet.automation.heal every ${interval}s (probe $probe)"

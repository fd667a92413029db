#!/bin/bash
# Prometheus exporters as systemd units: node_exporter (with the infiniband collector, which
# reads the EFA devices' counters, and the textfile collector for health results) and, on GPU
# nodes, dcgm-exporter.
# Parameters: GPUFLEET_NUM_GPUS, GPUFLEET_NODE_EXPORTER (binary), GPUFLEET_DCGM_EXPORTER (binary).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

textfile_dir=/var/lib/node_exporter/textfile
mkdir -p "${GPUFLEET_ROOT:-}$textfile_dir"
units=(gpufleet-node-exporter.service)

write_file /etc/systemd/system/gpufleet-node-exporter.service 0644 <<UNIT
[Unit]
Description=Prometheus node exporter (gpufleet: host, EFA via infiniband, health textfile)
After=network-online.target

[Service]
ExecStart=${GPUFLEET_NODE_EXPORTER:-/usr/local/bin/node_exporter} --web.listen-address=:9100 --collector.infiniband --collector.textfile.directory=$textfile_dir
Restart=always
RestartSec=5
DynamicUser=yes

[Install]
WantedBy=multi-user.target
UNIT

if [ "${GPUFLEET_NUM_GPUS:-0}" -gt 0 ]; then
    write_file /etc/systemd/system/gpufleet-dcgm-exporter.service 0644 <<UNIT
[Unit]
Description=NVIDIA DCGM exporter (gpufleet)
After=nvidia-dcgm.service
Wants=nvidia-dcgm.service

[Service]
ExecStart=${GPUFLEET_DCGM_EXPORTER:-/usr/bin/dcgm-exporter} --address :9400
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
    units+=(gpufleet-dcgm-exporter.service)
fi

systemctl daemon-reload
systemctl enable --now "${units[@]}"
log "exporters enabled: ${units[*]}"
